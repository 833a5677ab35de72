-- A function's live configuration (dormant_catalog.live_config): JSON values by name that reach its
-- running handlers as ctx.config without a restart. revision counts changes; published_revision is
-- the revision the controller last published retained on mesh/config/{svc} (writers wait for it).
CREATE TABLE function_config (
    service text PRIMARY KEY,
    config jsonb NOT NULL DEFAULT '{}'::jsonb,
    revision bigint NOT NULL DEFAULT 0,
    published_revision bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
