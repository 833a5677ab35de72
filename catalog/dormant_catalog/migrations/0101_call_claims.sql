-- callId de-duplication: a call is claimed by one runtime (owner) under a lease before its handler runs.
-- A repeat of a finished call reads the stored response; a repeat of a running call waits; a call whose
-- owner died (lease expired) is taken over. ``attempts`` counts the claims (1 = ran once).
ALTER TABLE call_results
    ADD COLUMN owner            text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN attempts         integer NOT NULL DEFAULT 1,
    ADD COLUMN version          integer,
    ADD COLUMN finished_at      timestamptz;
