-- Dormant catalog, initial schema: versions, deployments, replica slots, pods, aliases, audit, call results.

CREATE TABLE application_catalog (
    app_name           text        NOT NULL CHECK (app_name ~ '^[a-z0-9-]{1,64}$'),
    version            integer     NOT NULL CHECK (version > 0),
    app_layer_image    text        NOT NULL,
    base_image         text        NOT NULL,
    platform_interface text        NOT NULL DEFAULT 'dormant/1',
    interface_hash     text        NOT NULL,
    schema_definition  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    topic_mappings     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text        NOT NULL DEFAULT 'cli',
    status             text        NOT NULL DEFAULT 'built'
        CHECK (status IN ('built', 'tested', 'approved', 'deprecated')),
    PRIMARY KEY (app_name, version)
);

-- Versions are immutable: only their status may change.
CREATE FUNCTION dormant_refuse_version_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF ROW(NEW.app_name, NEW.version, NEW.app_layer_image, NEW.base_image, NEW.platform_interface,
           NEW.interface_hash, NEW.schema_definition, NEW.topic_mappings, NEW.created_at, NEW.created_by)
       IS DISTINCT FROM
       ROW(OLD.app_name, OLD.version, OLD.app_layer_image, OLD.base_image, OLD.platform_interface,
           OLD.interface_hash, OLD.schema_definition, OLD.topic_mappings, OLD.created_at, OLD.created_by)
    THEN
        RAISE EXCEPTION 'version % of % is immutable: only its status may change', OLD.version, OLD.app_name
            USING ERRCODE = 'DM001';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER application_catalog_immutable
    BEFORE UPDATE ON application_catalog
    FOR EACH ROW EXECUTE FUNCTION dormant_refuse_version_change();

CREATE TABLE application_deployments (
    app_name          text        PRIMARY KEY,
    target_version    integer     NOT NULL,
    deployment_action text        NOT NULL DEFAULT 'deploy',
    replicas          integer     NOT NULL CHECK (replicas >= 0),
    strategy          text        NOT NULL DEFAULT 'all-at-once',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deployed_by       text        NOT NULL,
    status            text        NOT NULL DEFAULT 'active',
    status_reason     text,
    FOREIGN KEY (app_name, target_version) REFERENCES application_catalog (app_name, version)
);

CREATE TABLE replica_slots (
    slot_id          bigserial   PRIMARY KEY,
    app_name         text        NOT NULL REFERENCES application_deployments (app_name) ON DELETE CASCADE,
    slot_index       integer     NOT NULL CHECK (slot_index >= 0),
    version          integer     NOT NULL,
    generation       bigint      NOT NULL DEFAULT 1,
    pod_id           text,
    lease_expires_at timestamptz,
    claimed_at       timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_name, slot_index),
    FOREIGN KEY (app_name, version) REFERENCES application_catalog (app_name, version),
    CHECK ((pod_id IS NULL) = (lease_expires_at IS NULL))
);

CREATE INDEX replica_slots_claimable ON replica_slots (lease_expires_at NULLS FIRST);

CREATE TABLE pods (
    pod_id              text        PRIMARY KEY,
    base_images         text[]      NOT NULL,
    platform_interfaces text[]      NOT NULL,
    registered_at       timestamptz NOT NULL DEFAULT now(),
    last_seen           timestamptz NOT NULL DEFAULT now(),
    state               text        NOT NULL DEFAULT 'idle'
        CHECK (state IN ('idle', 'serving', 'gone'))
);

CREATE TABLE aliases (
    app_name   text        NOT NULL,
    alias      text        NOT NULL,
    weights    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL DEFAULT 'cli',
    PRIMARY KEY (app_name, alias)
);

-- The primary version of an alias: the one with the highest positive weight (ties: the newer version).
CREATE FUNCTION dormant_alias_primary(p_app text, p_alias text) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT w.key::integer
      FROM aliases a, jsonb_each_text(a.weights) AS w(key, value)
     WHERE a.app_name = p_app AND a.alias = p_alias AND w.value::numeric > 0
     ORDER BY w.value::numeric DESC, w.key::integer DESC
     LIMIT 1
$$;

CREATE TABLE audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    app_name text,
    action   text        NOT NULL,
    detail   jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_by_app ON audit_log (app_name, id);

CREATE TABLE call_results (
    app_name   text        NOT NULL,
    call_id    text        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('running', 'ok', 'error')),
    response   bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (app_name, call_id)
);

CREATE INDEX call_results_expiry ON call_results (expires_at);
