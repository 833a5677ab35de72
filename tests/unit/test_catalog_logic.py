"""Pure logic of the catalog: migration discovery, name checks, alias primaries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dormant_catalog import AliasRecord, InvalidCatalogRequest, MigrationError
from dormant_catalog.migrate import load_migrations
from dormant_catalog.names import check_app_name, check_lease, check_replicas, check_status


def test_shipped_migrations_start_at_one_and_increase() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert migrations[0].name.startswith("0001_")
    assert "CREATE TABLE application_catalog" in migrations[0].sql


def test_migrations_are_ordered_by_number_not_listing(tmp_path: Path) -> None:
    for name in ("0002_b.sql", "0001_a.sql", "0003_c.sql"):
        (tmp_path / name).write_text(f"-- {name}")
    (tmp_path / "README.md").write_text("ignored")
    assert [m.name for m in load_migrations(tmp_path)] == ["0001_a.sql", "0002_b.sql", "0003_c.sql"]


def test_numbers_may_leave_gaps_for_component_ranges(tmp_path: Path) -> None:
    for name in ("0001_a.sql", "0101_b.sql", "0002_c.sql"):
        (tmp_path / name).write_text("SELECT 1")
    assert [m.version for m in load_migrations(tmp_path)] == [1, 2, 101]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["0001_a.sql", "0002_b.sql", "0002_c.sql"], "two migrations numbered 0002"),
        (["0001_a.sql", "2_b.sql"], "is not NNNN_name.sql"),
    ],
)
def test_broken_migration_sets_are_refused(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_checksum_follows_content(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    first = load_migrations(tmp_path)[0].checksum
    (tmp_path / "0001_a.sql").write_text("SELECT 2")
    assert load_migrations(tmp_path)[0].checksum != first


@pytest.mark.parametrize("name", ["user-service", "a", "x" * 64, "svc2"])
def test_valid_service_names(name: str) -> None:
    assert check_app_name(name) == name


@pytest.mark.parametrize("name", ["", "User", "a_b", "x" * 65, "a/b", "a b"])
def test_invalid_service_names(name: str) -> None:
    with pytest.raises(InvalidCatalogRequest):
        check_app_name(name)


def test_other_checks() -> None:
    assert check_status("approved") == "approved"
    with pytest.raises(InvalidCatalogRequest):
        check_status("live")
    assert check_replicas(0) == 0
    with pytest.raises(InvalidCatalogRequest):
        check_replicas(-1)
    with pytest.raises(InvalidCatalogRequest):
        check_lease(0)


@pytest.mark.parametrize(
    ("weights", "primary"),
    [({3: 100}, 3), ({1: 90, 2: 10}, 1), ({1: 50, 2: 50}, 2), ({1: 0, 2: 0}, None), ({}, None)],
)
def test_alias_primary(weights: dict[int, int], primary: int | None) -> None:
    alias = AliasRecord("svc", "live", weights, datetime.now(UTC), "cli")
    assert alias.primary == primary
