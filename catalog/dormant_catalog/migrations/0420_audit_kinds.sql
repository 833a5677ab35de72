-- The audit log holds four kinds of entries (dormant_catalog.audit): deployment (changes to versions,
-- deployments, aliases, settings: every row before this migration), execution (a call a runtime ran),
-- authorization (a call refused for its caller) and security (a refused token at the gateway, a
-- callId reused with another input, a runtime session taken over).
ALTER TABLE audit_log ADD COLUMN kind text NOT NULL DEFAULT 'deployment'
    CHECK (kind IN ('deployment', 'execution', 'authorization', 'security'));
CREATE INDEX audit_log_by_kind ON audit_log (app_name, kind, id);
CREATE INDEX audit_log_by_time ON audit_log (kind, at);
