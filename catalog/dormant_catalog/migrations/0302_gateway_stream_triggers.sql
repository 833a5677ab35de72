-- Stream triggers (NATS JetStream) join the HTTP, cron and queue triggers.
ALTER TABLE gateway_triggers DROP CONSTRAINT gateway_triggers_kind_check;
ALTER TABLE gateway_triggers ADD CONSTRAINT gateway_triggers_kind_check
    CHECK (kind IN ('http', 'cron', 'queue', 'stream'));
