-- Layers beside a version's app layer: its dependency layer (resolved at build, one per version), shared
-- layer versions (immutable, name + version) and the ordered layers attached to a function.

CREATE TABLE version_dependencies (
    app_name     text    NOT NULL,
    version      integer NOT NULL,
    layer_image  text    NOT NULL,
    lock_digest  text    NOT NULL CHECK (lock_digest ~ '^sha256:[0-9a-f]{64}$'),
    lock         jsonb   NOT NULL,
    PRIMARY KEY (app_name, version),
    FOREIGN KEY (app_name, version) REFERENCES application_catalog (app_name, version) ON DELETE CASCADE
);

CREATE TABLE layer_versions (
    name           text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9-]{0,63}$'),
    version        integer     NOT NULL CHECK (version > 0),
    layer_image    text        NOT NULL,
    unpacked_bytes bigint      NOT NULL CHECK (unpacked_bytes >= 0),
    description    text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text        NOT NULL,
    PRIMARY KEY (name, version)
);

-- Layer versions are immutable.
CREATE FUNCTION dormant_refuse_layer_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'version % of layer % is immutable', OLD.version, OLD.name USING ERRCODE = 'DM001';
END;
$$;

CREATE TRIGGER layer_versions_immutable
    BEFORE UPDATE ON layer_versions
    FOR EACH ROW EXECUTE FUNCTION dormant_refuse_layer_change();

CREATE TABLE function_layers (
    app_name      text    NOT NULL CHECK (app_name ~ '^[a-z0-9-]{1,64}$'),
    position      integer NOT NULL CHECK (position BETWEEN 1 AND 5),
    layer_name    text    NOT NULL,
    layer_version integer NOT NULL,
    PRIMARY KEY (app_name, position),
    UNIQUE (app_name, layer_name),
    FOREIGN KEY (layer_name, layer_version) REFERENCES layer_versions (name, version)
);
