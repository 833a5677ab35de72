"""Interface compatibility on a real catalog: publishing records each version's verdict against the live
version; a compatible version goes live without approval; a breaking one gets no weight in ``live`` by
any path (deploy, alias, rollout, even forced) until approved, while another alias may route to it;
the approval is in the audit log with its actor; ``dormant diff`` reports it; the gateway answers 409."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dormant_catalog import ApprovalRequired, Catalog
from dormant_codegen.publish import Published, publish_version
from dormant_layers import LayerStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "codegen"


def write_ping(service_dir: Path, text: dict[str, Any], **extra: Any) -> None:
    schemas = {
        "Ping": {"type": "object", "properties": {"text": text, **extra}},
        "Pong": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    }
    (service_dir / "schemas" / "ping.json").write_text(json.dumps(schemas, indent=2))


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    target = Path(shutil.copytree(FIXTURES / "import_check", tmp_path / "svc"))
    for old in (target / "schemas").glob("*.json"):
        old.unlink()
    write_ping(target, {"type": "string"})
    return target


async def publish(service_dir: Path, catalog: Catalog, tmp_path: Path) -> Published:
    return await publish_version(
        service_dir, store=LayerStore(tmp_path / "layers"), db=catalog.db, actor="ann"
    )


async def test_breaking_versions_need_approval_to_go_live(
    catalog: Catalog, service_dir: Path, tmp_path: Path, catalog_url: str
) -> None:
    v1 = await publish(service_dir, catalog, tmp_path)
    app = v1.service
    assert v1.compatibility is not None
    assert (v1.compatibility.schema_version, v1.compatibility.compared_to) == ("1.0.0", None)
    await catalog.deploy(app, version=1, replicas=1, actor="ann")

    # v2 adds an optional input property: compatible, a minor schema version, goes live unapproved.
    write_ping(service_dir, {"type": "string"}, lang={"type": "string"})
    v2 = await publish(service_dir, catalog, tmp_path)
    record = v2.compatibility
    assert record is not None and v2.version == 2
    assert (record.compared_to, record.breaking, record.schema_version) == (1, False, "1.1.0")
    assert record.backward_compatible == ["1.0.0"]
    assert [f["rule"] for f in record.findings] == ["INPUT_PROPERTY_ADDED"]
    await catalog.deploy(app, version=2, replicas=1, actor="ann")
    assert (await catalog.list_aliases(app))["live"] == {2: 100}

    # v3 makes text required: breaking against the live v2.
    write_ping(service_dir, {"type": "string", "required": True}, lang={"type": "string"})
    v3 = await publish(service_dir, catalog, tmp_path)
    record = v3.compatibility
    assert record is not None and v3.version == 3
    assert (record.compared_to, record.breaking, record.schema_version) == (2, True, "2.0.0")
    assert record.backward_compatible == []
    assert [(f["path"], f["rule"]) for f in record.breaks] == [
        ("ping.input.properties.text", "INPUT_PROPERTY_REQUIRED_ADDED")
    ]

    with pytest.raises(ApprovalRequired, match=rf"dormant approve {app} 3") as refused:
        await catalog.deploy(app, version=3, replicas=1, actor="ann")
    assert "ping.input.properties.text: INPUT_PROPERTY_REQUIRED_ADDED" in str(refused.value)
    await catalog.set_version_status(app, 3, "tested", actor="ann")  # not an approval
    with pytest.raises(ApprovalRequired):
        await catalog.set_alias(app, "live", {2: 90, 3: 10}, actor="ann", force=True)
    with pytest.raises(ApprovalRequired):
        await catalog.start_rollout(app, 3, {"strategy": "canary", "force": True}, actor="ann")
    assert await catalog.active_rollout(app) is None
    assert (await catalog.list_aliases(app))["live"] == {2: 100}

    # Before approval it can be tried under another alias.
    await catalog.set_alias(app, "try-v3", {3: 100}, actor="ann")
    assert (await catalog.list_aliases(app))["try-v3"] == {3: 100}

    # `dormant diff` (no directory): the latest version against live, breaking, not approved.
    code, out = await asyncio.to_thread(cli, ["diff", app, "--catalog-url", catalog_url])
    assert code == 1
    assert out.splitlines()[:2] == [
        f"{app} v3 against v2 (live): breaking (schema version 1.1.0 -> 2.0.0)",
        "ping.input.properties.text: INPUT_PROPERTY_REQUIRED_ADDED: text was optional and is now required",
    ]
    assert f"cannot go live until `dormant approve {app} 3`" in out

    # The approval: audited with its actor and reason; then live may move to it.
    await catalog.set_version_status(app, 3, "approved", actor="alice", why="callers send text now")
    approved = await catalog.get_compatibility(app, 3)
    assert approved is not None and approved.approved_by == "alice" and not approved.needs_approval
    audit = [r for r in await catalog.list_audit(app) if r.action == "approve-breaking"]
    assert len(audit) == 1 and audit[0].actor == "alice" and audit[0].kind == "deployment"
    assert audit[0].detail["version"] == 3 and audit[0].detail["why"] == "callers send text now"
    assert "INPUT_PROPERTY_REQUIRED_ADDED" in audit[0].detail["breaking"]
    await catalog.deploy(app, version=3, replicas=1, actor="ann")
    assert (await catalog.list_aliases(app))["live"] == {3: 100}
    # Approving again records nothing more.
    await catalog.set_version_status(app, 3, "approved", actor="bob")
    assert len([r for r in await catalog.list_audit(app) if r.action == "approve-breaking"]) == 1

    code, out = await asyncio.to_thread(cli, ["diff", app, "--catalog-url", catalog_url])
    assert code == 0 and "is the latest version and the live one" in out


async def test_diff_of_a_directory_and_the_gateway_conflict(
    catalog: Catalog, service_dir: Path, tmp_path: Path, catalog_url: str
) -> None:
    v1 = await publish(service_dir, catalog, tmp_path)
    app = v1.service
    await catalog.deploy(app, version=1, replicas=1, actor="ann")

    write_ping(service_dir, {"type": "integer"})  # text: string -> integer
    code, out = await asyncio.to_thread(
        cli, ["diff", app, str(service_dir), "--catalog-url", catalog_url, "--json"]
    )
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "breaking" and report["schemaVersion"] == "2.0.0"
    assert report["against"] == {"version": 1, "live": True, "schemaVersion": "1.0.0"}
    assert [(f["path"], f["rule"]) for f in report["findings"]] == [
        ("ping.input.properties.text.type", "TYPE_NARROWED")
    ]
    assert report["schemaVersionDocument"]["schemaVersion"] == "2.0.0"

    write_ping(service_dir, {"type": "string", "maxLength": 10})
    code, out = await asyncio.to_thread(cli, ["diff", app, str(service_dir), "--catalog-url", catalog_url])
    assert code == 1 and "ping.input.properties.text.maxLength: BOUND_TIGHTENED: maxLength 10 added" in out
    code, out = await asyncio.to_thread(
        cli, ["diff", app, str(service_dir), "--against", "9", "--catalog-url", catalog_url]
    )
    assert code == 2

    write_ping(service_dir, {"type": "string"})
    code, out = await asyncio.to_thread(cli, ["diff", app, str(service_dir), "--catalog-url", catalog_url])
    assert code == 0 and out.startswith(f"{app} {service_dir} against v1 (live): compatible")

    # The gateway maps the refusal to 409 Conflict, naming `dormant approve` and the findings.
    write_ping(service_dir, {"type": "string", "format": "email"})
    v2 = await publish(service_dir, catalog, tmp_path)
    with pytest.raises(ApprovalRequired) as refused:
        await catalog.deploy(app, version=v2.version, replicas=1, actor="ann")
    from dormant_gateway.app import _catalog_error

    response = await _catalog_error(None, refused.value)  # type: ignore[arg-type]
    body = json.loads(bytes(response.body))
    assert response.status_code == 409 and body["type"] == "Conflict"
    assert f"dormant approve {app} 2" in body["message"]
    assert body["details"]["findings"][0]["rule"] == "FORMAT_ADDED"


def cli(argv: list[str]) -> tuple[int, str]:
    """Run ``dormant ARGV`` in this process; (exit status, stdout)."""
    import contextlib
    import io

    from dormant_cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()
