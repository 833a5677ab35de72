-- Function logs: one row per record a pod's sidecar captured from a runtime (stdout/stderr), in the
-- seed's JSON format (dormant_telemetry.logs), kept for the retention period (DORMANT_LOG_RETENTION_S,
-- 7 days by default; the active controller deletes older rows). Every read names one service.
--   seq:      the order rows were stored in (cursors of readers that follow new records)
--   ts:       the record's time (the sidecar's clock when the runtime's own was missing or far off)
--   severity: the level as a number (DEBUG 10 ... CRITICAL 50), so "--level WARNING" is ">= 30"
--   record:   the whole record as published on mesh/logs/{svc}/v{N}
CREATE TABLE function_logs (
    seq      bigserial PRIMARY KEY,
    app_name text        NOT NULL,
    version  integer     NOT NULL,
    ts       timestamptz NOT NULL,
    severity smallint    NOT NULL,
    call_id  text,
    record   jsonb       NOT NULL
);
CREATE INDEX function_logs_app_ts ON function_logs (app_name, ts);
CREATE INDEX function_logs_app_call ON function_logs (app_name, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX function_logs_ts ON function_logs (ts);
