-- Gateway: control-plane function settings, triggers and their metrics, persisted async invocations.

CREATE TABLE gateway_functions (
    name        text        PRIMARY KEY CHECK (name ~ '^[a-z0-9-]{1,64}$'),
    runtime     text        NOT NULL,
    handler     text        NOT NULL,
    memory_mb   integer     NOT NULL CHECK (memory_mb BETWEEN 128 AND 10240 AND memory_mb % 64 = 0),
    timeout_s   integer     NOT NULL CHECK (timeout_s BETWEEN 1 AND 900),
    environment jsonb       NOT NULL DEFAULT '{}'::jsonb,
    tags        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    description text        NOT NULL DEFAULT '',
    concurrency jsonb       NOT NULL DEFAULT '{}'::jsonb,
    owner       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE gateway_triggers (
    trigger_id    text        PRIMARY KEY,
    function_name text        NOT NULL CHECK (function_name ~ '^[a-z0-9-]{1,64}$'),
    kind          text        NOT NULL CHECK (kind IN ('http', 'cron', 'queue')),
    target        text        NOT NULL,
    config        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    enabled       boolean     NOT NULL DEFAULT true,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX gateway_triggers_by_function ON gateway_triggers (function_name, created_at);
CREATE INDEX gateway_triggers_enabled ON gateway_triggers (kind) WHERE enabled;

CREATE TABLE gateway_trigger_metrics (
    trigger_id    text        PRIMARY KEY REFERENCES gateway_triggers (trigger_id) ON DELETE CASCADE,
    fired         bigint      NOT NULL DEFAULT 0,
    succeeded     bigint      NOT NULL DEFAULT 0,
    failed        bigint      NOT NULL DEFAULT 0,
    retried       bigint      NOT NULL DEFAULT 0,
    dead_lettered bigint      NOT NULL DEFAULT 0,
    last_fired_at timestamptz
);

CREATE TABLE gateway_invocations (
    call_id         text        PRIMARY KEY,
    app_name        text        NOT NULL,
    function        text        NOT NULL,
    version         integer,
    alias           text,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    timeout_s       double precision NOT NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    result          jsonb,
    error           jsonb,
    source          text        NOT NULL DEFAULT 'api',
    trigger_id      text,
    scheduled_at    timestamptz,
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX gateway_invocations_due ON gateway_invocations (next_attempt_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX gateway_invocations_dead ON gateway_invocations (app_name, finished_at) WHERE status = 'dead';
CREATE INDEX gateway_invocations_by_trigger ON gateway_invocations (trigger_id, scheduled_at)
    WHERE trigger_id IS NOT NULL;
