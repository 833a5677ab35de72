-- Rollouts: one row per progressive deployment of a version (canary, linear, blue-green, rolling, A/B).
-- The controller drives the running ones; everything it needs to resume after a restart is here.

CREATE TABLE rollouts (
    rollout_id      bigserial   PRIMARY KEY,
    app_name        text        NOT NULL REFERENCES application_deployments (app_name) ON DELETE CASCADE,
    from_version    integer     NOT NULL,
    to_version      integer     NOT NULL,
    strategy        text        NOT NULL
        CHECK (strategy IN ('canary', 'linear', 'blue-green', 'rolling', 'ab')),
    config          jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'running'
        CHECK (state IN ('running', 'waiting', 'succeeded', 'rolled-back')),
    step            integer     NOT NULL DEFAULT 0,
    step_started_at timestamptz,
    reason          text,
    numbers         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    retire_version  integer,
    retire_at       timestamptz,
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    FOREIGN KEY (app_name, from_version) REFERENCES application_catalog (app_name, version),
    FOREIGN KEY (app_name, to_version) REFERENCES application_catalog (app_name, version)
);

-- At most one rollout in progress per application.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (app_name) WHERE state IN ('running', 'waiting');
CREATE INDEX rollouts_by_app ON rollouts (app_name, rollout_id);
CREATE INDEX rollouts_to_retire ON rollouts (retire_at) WHERE retire_version IS NOT NULL;
