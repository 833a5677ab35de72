"""Catalog exceptions: everything the catalog raises on purpose derives from ``CatalogError``."""

from __future__ import annotations


class CatalogError(Exception):
    """Base of every catalog error."""


class NotFoundInCatalog(CatalogError):
    """The application, version, deployment or alias does not exist."""


class InvalidCatalogRequest(CatalogError, ValueError):
    """The arguments can never succeed (bad name, negative replicas, unknown status...)."""


class ImmutableVersion(CatalogError):
    """Something tried to change a registered version other than its status."""


class CatalogUnavailable(CatalogError):
    """The database cannot be reached right now; the same call may succeed later."""


class MigrationError(CatalogError):
    """The migrations on disk do not fit the database (missing or malformed files)."""
