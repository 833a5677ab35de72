-- callId de-duplication is keyed by (service, function, callId), and a stored call keeps a fingerprint
-- (sha256 of its canonical input JSON) so a reuse of the callId with another input is refused instead
-- of being answered with the first call's answer.
--
-- Rows written before this migration get function '' (a name no function has: they are never matched
-- again and expire with their ttl) and no fingerprint. ``call_id`` is bounded (the runtime refuses a
-- longer callId with a ValidationError first); NOT VALID leaves rows written before unchecked.
ALTER TABLE call_results
    ADD COLUMN function    text NOT NULL DEFAULT '',
    ADD COLUMN fingerprint bytea;
ALTER TABLE call_results ALTER COLUMN function DROP DEFAULT;
ALTER TABLE call_results DROP CONSTRAINT call_results_pkey;
ALTER TABLE call_results ADD PRIMARY KEY (app_name, function, call_id);
ALTER TABLE call_results
    ADD CONSTRAINT call_results_call_id_length CHECK (octet_length(call_id) <= 512) NOT VALID;
