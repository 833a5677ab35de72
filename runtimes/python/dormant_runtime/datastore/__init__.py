"""The platform's data services for handlers: the DataStore and the Authorizer in Postgres.

- ``schema.ensure_schema``: the ``dormant_data`` schema, the ``dormant_fn`` caller role, row-level
  security; run once at start-up on the catalog database.
- ``PostgresDataStore`` / ``PostgresAuthorizer``: bound to one call's caller and service, working in the
  call's transaction; ``leave_caller_role`` before the runtime writes its own rows in it.
- ``apply_migrations``: a service's collection migrations, once per version.
- ``erase_user``: GDPR erasure of a user's documents and grants, audited.
- ``read_audit``: the audit trail.
"""

from .audit import read_audit
from .authz import PostgresAuthorizer
from .erase import erase_user
from .migrate import apply_migrations
from .schema import CALLER_ROLE, SCHEMA, ensure_schema
from .store import PostgresDataStore, enter_caller_role, leave_caller_role

__all__ = [
    "CALLER_ROLE",
    "SCHEMA",
    "PostgresAuthorizer",
    "PostgresDataStore",
    "apply_migrations",
    "ensure_schema",
    "enter_caller_role",
    "erase_user",
    "leave_caller_role",
    "read_audit",
]
