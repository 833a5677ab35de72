"""The example user-service on the DataStore, end to end: real pods, real Postgres row-level security.

alice's records are found through either replica (a record created through one is read through the
other, in both directions, the first replica gone); bob does not see them (``NotFound``) until an
``admin`` grants him ``read``; every access is in the audit trail, as its caller.
"""

from __future__ import annotations

import signal

import psycopg
import pytest

from dormant import Client, Forbidden, NotFound

from .mesh import EXAMPLE, Mesh

pytestmark = pytest.mark.slow


def _as(mesh: Mesh, user: str, *roles: str) -> Client:
    return Client(mesh.broker_url, authorization=f"Bearer {mesh.identity.token(user, *roles)}", timeout=15)


def _stop(mesh: Mesh, pod_id: str) -> None:
    """SIGTERM: the pod drains its runtimes and gives its slot back."""
    pod = mesh.pods[pod_id]
    pod.send_signal(signal.SIGTERM)
    pod.wait(60)


async def test_records_belong_to_their_creator_across_replicas(mesh: Mesh) -> None:
    service, version = await mesh.publish(EXAMPLE)
    await mesh.deploy(service, version, replicas=2)
    mesh.start_pod("pod-a")
    mesh.start_pod("pod-b")
    await mesh.wait_serving(service, timeout=60)
    alice, bob, root = _as(mesh, "alice"), _as(mesh, "bob"), _as(mesh, "root", "admin")
    async with alice, bob, root:
        first = await alice.call(service, "createUser", {"email": "ann@example.com", "name": "Ann"})
        for _ in range(6):  # the shared subscription hands these to both replicas
            found = await alice.call(service, "getUser", {"userId": first["userId"]})
            assert found["name"] == "Ann" and found["email"] == "ann@example.com"
        with pytest.raises(NotFound):
            await bob.call(service, "getUser", {"userId": first["userId"]})
        # Emails are unique per caller: bob may have his own ann@example.com.
        await bob.call(service, "createUser", {"email": "ann@example.com", "name": "Bob's Ann"})

        # Only pod-b serves now: it reads what either replica wrote.
        _stop(mesh, "pod-a")
        await mesh.wait_serving(service, timeout=60)
        assert (await alice.call(service, "getUser", {"userId": first["userId"]}))["name"] == "Ann"
        second = await alice.call(service, "createUser", {"email": "bo@example.com", "name": "Bo"})
        # A new pod takes the free slot; then pod-b goes: pod-c reads what pod-b wrote.
        mesh.start_pod("pod-c")
        await mesh.wait_serving(service, timeout=60)
        _stop(mesh, "pod-b")
        await mesh.wait_serving(service, timeout=60)
        for record, name in ((first, "Ann"), (second, "Bo")):
            assert (await alice.call(service, "getUser", {"userId": record["userId"]}))["name"] == name

        # Granting takes the admin role; once granted, bob reads alice's records.
        with pytest.raises(Forbidden):
            await bob.call(service, "grantRead", {"user": "bob"})
        assert await root.call(service, "grantRead", {"user": "bob"}) == {"granted": True}
        assert (await bob.call(service, "getUser", {"userId": second["userId"]}))["name"] == "Bo"

    async with await psycopg.AsyncConnection.connect(mesh.catalog_url) as db:
        rows = await (
            await db.execute(
                "SELECT actor, action, collection, document_id FROM dormant_data.audit"
                " WHERE service = 'user-service' ORDER BY at"
            )
        ).fetchall()
        documents = await (
            await db.execute(
                "SELECT owner, count(*) FROM dormant_data.documents WHERE service = 'user-service'"
                " GROUP BY owner ORDER BY owner"
            )
        ).fetchall()
    assert documents == [("alice", 2), ("bob", 1)]
    actors = {actor for actor, *_ in rows}
    assert {"alice", "bob", "root"} <= actors
    assert ("bob", "get", "users", first["userId"]) in [tuple(r) for r in rows]  # the refused read too
