-- Interface compatibility (dormant_catalog.compatibility): per version, the verdict of its interface
-- against the version that was live when it was published (or the latest one when none was live),
-- its schema version, and, for a breaking version, who approved it going live. A breaking version
-- without approval gets no weight in the live alias.
CREATE TABLE version_compatibility (
    app_name            text        NOT NULL,
    version             integer     NOT NULL,
    compared_to         integer,
    breaking            boolean     NOT NULL,
    findings            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    schema_version      text        NOT NULL CHECK (schema_version ~ '^[0-9]+\.[0-9]+\.[0-9]+$'),
    backward_compatible jsonb       NOT NULL DEFAULT '[]'::jsonb,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    approved_by         text,
    approved_at         timestamptz,
    approval_reason     text,
    PRIMARY KEY (app_name, version),
    FOREIGN KEY (app_name, version) REFERENCES application_catalog (app_name, version) ON DELETE CASCADE,
    CHECK ((approved_by IS NULL) = (approved_at IS NULL))
);
