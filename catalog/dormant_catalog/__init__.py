"""The Dormant catalog: the Postgres schema, its migrations and every query on it."""

from .catalog import Catalog, open_catalog, open_database
from .compatibility import ApprovalRequired, CompatibilityRecord
from .db import Database
from .errors import (
    CatalogError,
    CatalogUnavailable,
    ImmutableVersion,
    InvalidCatalogRequest,
    MigrationError,
    NotFoundInCatalog,
)
from .listen import SlotListener
from .migrate import migrate
from .records import (
    AliasRecord,
    AuditRecord,
    DeploymentRecord,
    DeploymentStatus,
    PodRecord,
    SlotClaim,
    SlotRecord,
    VersionRecord,
)

__all__ = [
    "AliasRecord",
    "ApprovalRequired",
    "AuditRecord",
    "Catalog",
    "CatalogError",
    "CatalogUnavailable",
    "CompatibilityRecord",
    "Database",
    "DeploymentRecord",
    "DeploymentStatus",
    "ImmutableVersion",
    "InvalidCatalogRequest",
    "MigrationError",
    "NotFoundInCatalog",
    "PodRecord",
    "SlotClaim",
    "SlotListener",
    "SlotRecord",
    "VersionRecord",
    "migrate",
    "open_catalog",
    "open_database",
]
