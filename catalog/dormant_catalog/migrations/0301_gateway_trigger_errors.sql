-- Why a trigger is not firing: set by the cron scheduler when a row cannot be computed or fired (the
-- trigger is skipped until the row changes), cleared when the trigger is enabled or disabled.
ALTER TABLE gateway_triggers ADD COLUMN last_error text, ADD COLUMN last_error_at timestamptz;
