"""The ``dormant_data`` schema: documents, grants, audit trail, applied migrations, and the caller role.

It lives in the catalog's database (so a handler's writes commit in the call's fenced transaction) but
handler statements run as ``dormant_fn``: a NOLOGIN role with no privilege outside this schema (the
catalog's tables in ``public`` grant it nothing) and, inside it, only:

- ``documents``: SELECT, INSERT (of its own documents), UPDATE of ``body``/``updated_at``, DELETE, all
  through row-level security (enabled and FORCED) whose policies read the caller's claims from the
  transaction-local setting ``request.jwt.claims`` and the service from ``dormant.service``, each through
  a sub-select so it is evaluated once per statement (PostgREST's way);
- ``audit``: INSERT of action, collection, document and detail only (actor, service, callId and time are
  column defaults taken from the same settings, and a policy checks them), never SELECT, UPDATE or DELETE;
- ``grants``: nothing; the Authorizer's SECURITY DEFINER functions read and change them after checking
  the caller, and the policies read them through ``granted_collections`` (also SECURITY DEFINER).

The role executing ``ensure_schema`` (the runtime's database user) owns the schema and gets a policy that
lets it do everything (it runs migrations and erasures); a superuser bypasses row-level security anyway.
A non-superuser runtime user is made a member of ``dormant_fn`` so it can ``SET ROLE`` to it.

``ensure_schema`` is idempotent and serialized by a transaction-level advisory lock (per database); the
role is cluster-wide, so its creation also tolerates another database creating it at the same moment.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from dormant.authorizer import DATASTORE_ACTIONS, ROLE_PERMISSIONS

SCHEMA = "dormant_data"
CALLER_ROLE = "dormant_fn"
SCHEMA_LOCK_KEY = 0x446F6461  # "Doda": every process creating the schema takes this advisory lock


def _text_array(names: set[str] | frozenset[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{name}'" for name in sorted(names)) + "]::text[]"


def _action_case(kind: str) -> str:
    """SQL: the grant names of ``kind`` that allow the action ``p_action``, from the SDK's table."""
    whens = []
    for action, permissions in sorted(DATASTORE_ACTIONS.items()):
        if kind == "permission":
            names = set(permissions)
        else:
            names = {role for role, implied in ROLE_PERMISSIONS.items() if implied & permissions}
        whens.append(f"WHEN '{action}' THEN {_text_array(names)}")
    return f"CASE p_action {' '.join(whens)} ELSE ARRAY[]::text[] END"


def _implying_roles_case() -> str:
    """SQL: the roles that imply the permission ``p_name``."""
    permissions = sorted({p for implied in ROLE_PERMISSIONS.values() for p in implied})
    whens = [
        f"WHEN '{permission}' THEN "
        + _text_array({role for role, implied in ROLE_PERMISSIONS.items() if permission in implied})
        for permission in permissions
    ]
    return f"CASE p_name {' '.join(whens)} ELSE ARRAY[]::text[] END"


_DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"

SCHEMA_SQL = f"""
DO $$ BEGIN
    CREATE ROLE {CALLER_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database made it first
END $$;

DO $$ BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, '{CALLER_ROLE}', 'MEMBER') THEN
        EXECUTE format('GRANT {CALLER_ROLE} TO %I', current_user);
    END IF;
EXCEPTION WHEN unique_violation THEN NULL;
END $$;

CREATE SCHEMA IF NOT EXISTS {SCHEMA};
REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
GRANT USAGE ON SCHEMA {SCHEMA} TO {CALLER_ROLE};

CREATE OR REPLACE FUNCTION {SCHEMA}.claims() RETURNS jsonb LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('request.jwt.claims', true), '')::jsonb $$;
CREATE OR REPLACE FUNCTION {SCHEMA}.claim_sub() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT {SCHEMA}.claims() ->> 'sub' $$;
CREATE OR REPLACE FUNCTION {SCHEMA}.current_service() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('dormant.service', true), '') $$;
CREATE OR REPLACE FUNCTION {SCHEMA}.current_call_id() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('dormant.call_id', true), '') $$;

CREATE TABLE IF NOT EXISTS {SCHEMA}.documents (
    service text NOT NULL,
    collection text NOT NULL,
    id text NOT NULL,
    owner text,
    body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, collection, id)
);
CREATE INDEX IF NOT EXISTS documents_owner ON {SCHEMA}.documents (owner, service);

CREATE TABLE IF NOT EXISTS {SCHEMA}.grants (
    database text NOT NULL,
    collection text NOT NULL,
    principal text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('role', 'permission')),
    name text NOT NULL,
    granted_by text,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (database, principal, kind, name, collection)
);
CREATE INDEX IF NOT EXISTS grants_principal ON {SCHEMA}.grants (principal);

CREATE TABLE IF NOT EXISTS {SCHEMA}.audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor text DEFAULT {SCHEMA}.claim_sub(),
    service text DEFAULT {SCHEMA}.current_service(),
    call_id text DEFAULT {SCHEMA}.current_call_id(),
    action text NOT NULL,
    collection text,
    document_id text,
    detail jsonb NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS audit_service_at ON {SCHEMA}.audit (service, at);

CREATE TABLE IF NOT EXISTS {SCHEMA}.collection_migrations (
    service text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, version)
);

-- The collections of the current service on which the caller holds a grant allowing p_action
-- ('*': all of them). SECURITY DEFINER: dormant_fn cannot read the grants table itself.
CREATE OR REPLACE FUNCTION {SCHEMA}.granted_collections(p_action text) RETURNS text[]
    LANGUAGE sql STABLE {_DEFINER} AS $$
    SELECT coalesce(array_agg(DISTINCT g.collection), ARRAY[]::text[])
    FROM {SCHEMA}.grants g
    WHERE g.database = {SCHEMA}.current_service()
      AND g.principal = {SCHEMA}.claim_sub()
      AND ((g.kind = 'permission' AND g.name = ANY ({_action_case("permission")}))
           OR (g.kind = 'role' AND g.name = ANY ({_action_case("role")})))
$$;

-- May the caller assign and remove grants on (p_database, p_collection)? Token role admin, or a stored
-- role admin on the database or that collection.
CREATE OR REPLACE FUNCTION {SCHEMA}.caller_may_manage(p_database text, p_collection text) RETURNS boolean
    LANGUAGE sql STABLE {_DEFINER} AS $$
    SELECT coalesce(({SCHEMA}.claims() -> 'roles') ? 'admin', false)
        OR EXISTS (
            SELECT 1 FROM {SCHEMA}.grants g
            WHERE g.database = p_database AND g.principal = {SCHEMA}.claim_sub()
              AND g.kind = 'role' AND g.name = 'admin' AND g.collection IN ('*', p_collection))
$$;

-- Why the caller may not act on p_database for p_principal (NULL: it may). Asking about oneself
-- (p_principal = the caller) needs no admin; pass NULL as p_principal for changes.
CREATE OR REPLACE FUNCTION {SCHEMA}.refusal(p_database text, p_collection text, p_principal text)
    RETURNS text LANGUAGE sql STABLE {_DEFINER} AS $$
    SELECT CASE
        WHEN p_database IS DISTINCT FROM {SCHEMA}.current_service() THEN 'another service''s database'
        WHEN p_principal IS NOT NULL AND p_principal = {SCHEMA}.claim_sub() THEN NULL
        WHEN NOT {SCHEMA}.caller_may_manage(p_database, p_collection)
            THEN 'the caller is not an admin of the database'
    END
$$;

-- Assign or remove grants; returns how many changed, or -1 when refused. Audited either way. Never
-- raises for a refusal: an error would abort the call's transaction, and the refusal's audit with it.
CREATE OR REPLACE FUNCTION {SCHEMA}.change_grants(
    p_op text, p_principal text, p_kind text, p_names text[], p_database text, p_collection text)
    RETURNS integer LANGUAGE plpgsql VOLATILE {_DEFINER} AS $$
DECLARE
    v_refusal text := {SCHEMA}.refusal(p_database, p_collection, NULL);
    v_changed integer := 0;
BEGIN
    IF v_refusal IS NULL THEN
        IF p_op = 'assign' THEN
            INSERT INTO {SCHEMA}.grants (database, collection, principal, kind, name, granted_by)
            SELECT p_database, p_collection, p_principal, p_kind, n, {SCHEMA}.claim_sub()
            FROM unnest(p_names) AS n
            ON CONFLICT DO NOTHING;
        ELSE
            DELETE FROM {SCHEMA}.grants
            WHERE database = p_database AND collection = p_collection AND principal = p_principal
              AND kind = p_kind AND name = ANY (p_names);
        END IF;
        GET DIAGNOSTICS v_changed = ROW_COUNT;
    END IF;
    INSERT INTO {SCHEMA}.audit (action, collection, detail) VALUES (
        p_op || '_' || p_kind, NULLIF(p_collection, '*'),
        jsonb_build_object('principal', p_principal, 'names', to_jsonb(p_names), 'database', p_database,
                           'allowed', v_refusal IS NULL, 'reason', v_refusal, 'result', v_changed));
    RETURN CASE WHEN v_refusal IS NULL THEN v_changed ELSE -1 END;
END
$$;

-- Does p_principal hold the role or permission p_name (a permission also through a role implying it)
-- on the database or that collection? 1 or 0, or -1 when the caller may not ask. Audited.
CREATE OR REPLACE FUNCTION {SCHEMA}.check_grant(
    p_kind text, p_principal text, p_name text, p_database text, p_collection text)
    RETURNS integer LANGUAGE plpgsql VOLATILE {_DEFINER} AS $$
DECLARE
    v_refusal text := {SCHEMA}.refusal(p_database, p_collection, p_principal);
    v_held boolean := false;
BEGIN
    IF v_refusal IS NULL THEN
        SELECT EXISTS (
            SELECT 1 FROM {SCHEMA}.grants g
            WHERE g.database = p_database AND g.principal = p_principal
              AND g.collection IN ('*', p_collection)
              AND ((g.kind = p_kind AND g.name = p_name)
                   OR (p_kind = 'permission' AND g.kind = 'role' AND g.name = ANY ({_implying_roles_case()})))
        ) INTO v_held;
    END IF;
    INSERT INTO {SCHEMA}.audit (action, collection, detail) VALUES (
        'has_' || p_kind, NULLIF(p_collection, '*'),
        jsonb_build_object('principal', p_principal, 'names', jsonb_build_array(p_name),
                           'database', p_database, 'allowed', v_refusal IS NULL, 'reason', v_refusal,
                           'result', v_held::integer));
    RETURN CASE WHEN v_refusal IS NULL THEN v_held::integer ELSE -1 END;
END
$$;

ALTER TABLE {SCHEMA}.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE {SCHEMA}.documents FORCE ROW LEVEL SECURITY;
ALTER TABLE {SCHEMA}.audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE {SCHEMA}.audit FORCE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS runtime_all ON {SCHEMA}.documents;
CREATE POLICY runtime_all ON {SCHEMA}.documents TO CURRENT_USER USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS caller_read ON {SCHEMA}.documents;
CREATE POLICY caller_read ON {SCHEMA}.documents FOR SELECT TO {CALLER_ROLE} USING (
    service = (SELECT {SCHEMA}.current_service())
    AND (owner IS NULL
         OR owner = (SELECT {SCHEMA}.claim_sub())
         OR ARRAY['*', collection] && (SELECT {SCHEMA}.granted_collections('read'))));
DROP POLICY IF EXISTS caller_insert ON {SCHEMA}.documents;
CREATE POLICY caller_insert ON {SCHEMA}.documents FOR INSERT TO {CALLER_ROLE} WITH CHECK (
    service = (SELECT {SCHEMA}.current_service())
    AND owner IS NOT DISTINCT FROM (SELECT {SCHEMA}.claim_sub()));
DROP POLICY IF EXISTS caller_update ON {SCHEMA}.documents;
CREATE POLICY caller_update ON {SCHEMA}.documents FOR UPDATE TO {CALLER_ROLE} USING (
    service = (SELECT {SCHEMA}.current_service())
    AND (owner IS NULL
         OR owner = (SELECT {SCHEMA}.claim_sub())
         OR ARRAY['*', collection] && (SELECT {SCHEMA}.granted_collections('write'))))
    WITH CHECK (service = (SELECT {SCHEMA}.current_service()));
DROP POLICY IF EXISTS caller_delete ON {SCHEMA}.documents;
CREATE POLICY caller_delete ON {SCHEMA}.documents FOR DELETE TO {CALLER_ROLE} USING (
    service = (SELECT {SCHEMA}.current_service())
    AND (owner IS NULL
         OR owner = (SELECT {SCHEMA}.claim_sub())
         OR ARRAY['*', collection] && (SELECT {SCHEMA}.granted_collections('delete'))));

DROP POLICY IF EXISTS runtime_all ON {SCHEMA}.audit;
CREATE POLICY runtime_all ON {SCHEMA}.audit TO CURRENT_USER USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS caller_append ON {SCHEMA}.audit;
CREATE POLICY caller_append ON {SCHEMA}.audit FOR INSERT TO {CALLER_ROLE} WITH CHECK (
    actor IS NOT DISTINCT FROM (SELECT {SCHEMA}.claim_sub())
    AND service IS NOT DISTINCT FROM (SELECT {SCHEMA}.current_service())
    AND call_id IS NOT DISTINCT FROM (SELECT {SCHEMA}.current_call_id()));

REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM PUBLIC, {CALLER_ROLE};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM PUBLIC, {CALLER_ROLE};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {SCHEMA} FROM PUBLIC, {CALLER_ROLE};
GRANT SELECT, DELETE ON {SCHEMA}.documents TO {CALLER_ROLE};
GRANT INSERT (service, collection, id, owner, body) ON {SCHEMA}.documents TO {CALLER_ROLE};
GRANT UPDATE (body, updated_at) ON {SCHEMA}.documents TO {CALLER_ROLE};
GRANT INSERT (action, collection, document_id, detail) ON {SCHEMA}.audit TO {CALLER_ROLE};
GRANT EXECUTE ON FUNCTION {SCHEMA}.claims(), {SCHEMA}.claim_sub(), {SCHEMA}.current_service(),
    {SCHEMA}.current_call_id(), {SCHEMA}.granted_collections(text),
    {SCHEMA}.change_grants(text, text, text, text[], text, text),
    {SCHEMA}.check_grant(text, text, text, text, text) TO {CALLER_ROLE};
"""


SCHEMA_VERSION = hashlib.sha256(SCHEMA_SQL.encode()).hexdigest()[:16]
"""Which ``SCHEMA_SQL`` a database holds (``{SCHEMA}.schema_version``): equal, nothing is run."""


async def _current_version(conn: psycopg.AsyncConnection[Any]) -> str | None:
    cursor = await conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.schema_version",))
    row = await cursor.fetchone()
    if row is None or row[0] is None:
        return None
    cursor = await conn.execute(f"SELECT version FROM {SCHEMA}.schema_version")
    found = await cursor.fetchone()
    return None if found is None else str(found[0])


async def ensure_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create or update the schema, the caller role and their privileges; safe to run concurrently.

    A database already at ``SCHEMA_VERSION`` is left alone (two reads, no lock): a runtime starting
    beside serving ones must not run DDL, whose table locks would deadlock with their calls' statements.
    Otherwise runs in its own transaction on ``conn`` (which must not be inside one, or it becomes a
    savepoint and the lock is held until the outer transaction ends), serialized by an advisory lock.
    """
    if await _current_version(conn) == SCHEMA_VERSION:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        if await _current_version(conn) == SCHEMA_VERSION:
            return  # another runtime brought it up to date while this one waited for the lock
        await conn.execute(SCHEMA_SQL.encode())
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (version text NOT NULL)")
        await conn.execute(f"DELETE FROM {SCHEMA}.schema_version")
        await conn.execute(f"INSERT INTO {SCHEMA}.schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
