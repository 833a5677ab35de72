-- Restoring a soft-deleted function re-enables exactly the triggers its deletion disabled.
ALTER TABLE gateway_triggers ADD COLUMN disabled_by_delete boolean NOT NULL DEFAULT false;
