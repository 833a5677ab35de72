"""Collection migrations (the seed's ``Up``/``Down`` with ``AddColumnToCollection``-style steps).

A service declares its migrations as data; the runtime applies them, once per (service, version), when
a version of the service is deployed, to every document of the service's collections whatever its
owner (they run as the runtime, not as a caller). Pure data here: nothing in this module touches a
store.

    Migration(
        version=2,
        name="users_get_a_status",
        up=[AddColumnToCollection("users", "status", "active")],
        down=[RemoveColumnFromCollection("users", "status")],
    )

Steps:

- ``AddColumnToCollection(collection, field, default)``: sets ``field`` to ``default`` (any JSON value)
  in every document that lacks it; documents that have it keep their value.
- ``RemoveColumnFromCollection(collection, field)``: removes ``field`` from every document.
- ``RenameColumnInCollection(collection, old, new)``: moves ``old``'s value to ``new`` in every document
  that has ``old`` (replacing a value already under ``new``); documents without ``old`` are unchanged.

A service declares them on its handler class, ``migrations = [Migration(...), ...]``; the runtime reads
them with ``declared_migrations`` and applies the pending ones when it starts (under a lock, recorded,
so once however many pods start at once), and ``dormant.testing.TestClient`` applies them to its
in-memory store.

``plan(migrations, applied, target)`` says what to run from what is applied: the ``up`` steps of the
missing versions (up to ``target``), ascending, then, with an explicit ``target``, the ``down`` steps of
the applied versions above it, descending.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .datastore import check_collection, check_field, normalize_value
from .errors import ValidationError

__all__ = [
    "AddColumnToCollection",
    "Migration",
    "MigrationStep",
    "PlannedMigration",
    "RemoveColumnFromCollection",
    "RenameColumnInCollection",
    "check_migrations",
    "declared_migrations",
    "plan",
]


@dataclass(frozen=True, slots=True)
class AddColumnToCollection:
    collection: str
    field: str
    default: Any = None

    def __post_init__(self) -> None:
        check_collection(self.collection)
        _check_data_field(self.field)
        object.__setattr__(self, "default", normalize_value(self.default, where="a column default"))


@dataclass(frozen=True, slots=True)
class RemoveColumnFromCollection:
    collection: str
    field: str

    def __post_init__(self) -> None:
        check_collection(self.collection)
        _check_data_field(self.field)


@dataclass(frozen=True, slots=True)
class RenameColumnInCollection:
    collection: str
    old: str
    new: str

    def __post_init__(self) -> None:
        check_collection(self.collection)
        _check_data_field(self.old)
        _check_data_field(self.new)
        if self.old == self.new:
            raise ValidationError("a rename needs two different field names", {"field": self.old})


MigrationStep = AddColumnToCollection | RemoveColumnFromCollection | RenameColumnInCollection


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up: Sequence[MigrationStep] = field(default_factory=tuple)
    down: Sequence[MigrationStep] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValidationError(
                "a migration version is a positive integer", {"version": repr(self.version)}
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError("a migration needs a name", {"version": self.version})
        for steps in (self.up, self.down):
            for step in steps:
                if not isinstance(
                    step, AddColumnToCollection | RemoveColumnFromCollection | RenameColumnInCollection
                ):
                    raise ValidationError(
                        "a migration step is AddColumnToCollection, RemoveColumnFromCollection or "
                        "RenameColumnInCollection",
                        {"version": self.version, "step": repr(step)},
                    )
        object.__setattr__(self, "up", tuple(self.up))
        object.__setattr__(self, "down", tuple(self.down))


@dataclass(frozen=True, slots=True)
class PlannedMigration:
    migration: Migration
    direction: Literal["up", "down"]

    @property
    def steps(self) -> Sequence[MigrationStep]:
        return self.migration.up if self.direction == "up" else self.migration.down


def _check_data_field(name: str) -> None:
    check_field(name)
    if name == "id":
        raise ValidationError("a document's id is not a column a migration can change")


def check_migrations(migrations: Iterable[Migration]) -> list[Migration]:
    """The migrations sorted by version; ``ValidationError`` for two with the same version."""
    ordered = sorted(migrations, key=lambda m: m.version)
    for index in range(1, len(ordered)):
        if ordered[index].version == ordered[index - 1].version:
            raise ValidationError("two migrations share a version", {"version": ordered[index].version})
    return ordered


def plan(
    migrations: Iterable[Migration], applied: Mapping[int, str], target: int | None
) -> list[PlannedMigration]:
    """What to run to bring a service from ``applied`` (version → name) to ``target``.

    ``target=None`` applies every pending ``up`` and never goes down, so a pod of an older version that
    starts while a newer one's migrations are applied changes nothing. An explicit ``target`` (0 undoes
    them all) also runs the ``down`` steps of the applied versions above it.

    ``ValidationError`` when ``target`` is not 0 or a declared version, when a declared version was
    applied under another name, or when going down would need a version that is not declared.
    """
    ordered = check_migrations(migrations)
    by_version = {m.version: m for m in ordered}
    if target is not None and target != 0 and target not in by_version:
        raise ValidationError("no migration has the target version", {"target": target})
    for version, name in applied.items():
        known = by_version.get(version)
        if known is not None and known.name != name:
            raise ValidationError(
                "a migration was applied under another name",
                {"version": version, "applied": name, "declared": known.name},
            )
        if known is None and target is not None and version > target:
            raise ValidationError(
                "cannot undo a migration that is not declared", {"version": version, "name": name}
            )
    ceiling = target if target is not None else (ordered[-1].version if ordered else 0)
    steps = [PlannedMigration(m, "up") for m in ordered if m.version <= ceiling and m.version not in applied]
    if target is not None:
        steps += [
            PlannedMigration(m, "down")
            for m in reversed(ordered)
            if m.version > target and m.version in applied
        ]
    return steps


def declared_migrations(handler_class: type) -> list[Migration]:
    """The migrations a handler class declares (its ``migrations`` attribute), checked; [] if none."""
    declared = getattr(handler_class, "migrations", None)
    if declared is None:
        return []
    if isinstance(declared, Migration | str | bytes) or not isinstance(declared, Iterable):
        raise ValidationError(f"{handler_class.__name__}.migrations must be a list of Migration")
    items = list(declared)
    if not all(isinstance(item, Migration) for item in items):
        raise ValidationError(f"{handler_class.__name__}.migrations must hold only Migration objects")
    return check_migrations(items)
