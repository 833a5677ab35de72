-- Why pods could not start a version, and when a pod may try it again: one row per (application,
-- version) that keeps failing. Each failure doubles the wait (up to a cap); a pod claims no slot of the
-- version before retry_at. A pod serving the version, a redeploy, or a slot pointed anew at the
-- version (a new slot, or a new generation) clears the row.
CREATE TABLE start_failures (
    app_name   text        NOT NULL,
    version    integer     NOT NULL,
    failures   integer     NOT NULL CHECK (failures > 0),
    last_error text        NOT NULL,
    pod_id     text,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    retry_at   timestamptz NOT NULL,
    PRIMARY KEY (app_name, version),
    FOREIGN KEY (app_name, version) REFERENCES application_catalog (app_name, version)
);

CREATE FUNCTION dormant_reset_start_failures() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM start_failures WHERE app_name = NEW.app_name AND version = NEW.version;
    RETURN NULL;
END;
$$;

CREATE TRIGGER replica_slots_new_slot_resets_failures
    AFTER INSERT ON replica_slots
    FOR EACH ROW EXECUTE FUNCTION dormant_reset_start_failures();

CREATE TRIGGER replica_slots_new_generation_resets_failures
    AFTER UPDATE OF generation ON replica_slots
    FOR EACH ROW WHEN (NEW.generation IS DISTINCT FROM OLD.generation)
    EXECUTE FUNCTION dormant_reset_start_failures();
