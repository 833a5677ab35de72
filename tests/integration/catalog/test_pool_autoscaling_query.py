"""The Helm chart's KEDA PostgreSQL trigger runs a query on the catalog (deploy/helm/dormant, pool
autoscaling): run here, as rendered, on a real catalog with pods and replica slots in every state, it
must count what the controller's pool gauges count (``dormant_catalog.observed``), for this pool's base
runtimes only, plus the spare free pods."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import psycopg
import yaml  # type: ignore[import-untyped]  # PyYAML, with datamodel-code-generator

from dormant_catalog import Catalog, observed

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "dormant"
PY = ["dormant-python:1"]
NODE = ["dormant-node:1"]
IFACES = ["dormant/1"]

Register = Callable[..., Awaitable[int]]

helm.disable_logging()


def rendered_query(**pool: Any) -> str:
    values = {"pool": {"autoscaling": {"mode": "keda", "keda": {"trigger": "postgresql"}, **pool}}}
    manifests = helm.Chart.load(CHART).render(values, name="dormant", namespace="dormant")
    return scaled_query(manifests)


def scaled_query(manifests: dict[str, str]) -> str:
    docs = [
        d for path, text in manifests.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d
    ]
    (scaled,) = [d for d in docs if d.get("kind") == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    query: str = trigger["metadata"]["query"]
    return query


async def pods_wanted(catalog_url: str, query: str) -> int:
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        cur = await conn.execute(query.encode())  # the chart's text, run as KEDA runs it
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def claim(catalog: Catalog, pod: str, bases: list[str], lease_s: float = 60.0) -> Any:
    await catalog.register_pod(pod, bases, IFACES)
    return await catalog.claim_slot(pod, base_images=bases, platform_interfaces=IFACES, lease_s=lease_s)


async def test_the_query_counts_pods_wanted_as_the_controller_does(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    query = rendered_query(spareFreePods=2)
    assert await pods_wanted(catalog_url, query) == 2  # nothing deployed: only the spare pods

    await register(catalog, "users")
    await catalog.deploy("users", replicas=3)
    await register(catalog, "broken")
    await catalog.deploy("broken", replicas=1)
    await register(catalog, "legacy", base_image=NODE[0])
    await catalog.deploy("legacy", replicas=2)
    assert await pods_wanted(catalog_url, query) == 3 + 1 + 2  # python slots + spare; node slots not ours

    # One python pod serves users; one claims broken, fails to start it and gives it back (its version
    # now waits out a back-off: more pods would not start it); a node pod serves legacy; one python pod
    # is free; one python pod stopped.
    assert (await claim(catalog, "py-a", PY)).app_name == "broken"
    assert await catalog.release_slot("py-a", (await catalog.list_slots("broken"))[0].slot_id, error="boom")
    assert (await claim(catalog, "py-b", PY)).app_name == "users"
    assert (await claim(catalog, "node-a", NODE)).app_name == "legacy"
    await catalog.register_pod("py-free", PY, IFACES)
    await catalog.register_pod("py-gone", PY, IFACES)
    await catalog.deregister_pod("py-gone")

    figures = await catalog.db.run(observed.figures)
    assert figures.unassigned == {"dormant-python:1": 2, "dormant-node:1": 1}  # broken's slot backs off
    python_claimed = 1  # py-b; node-a belongs to another pool
    assert figures.pods_claimed == python_claimed + 1
    wanted = await pods_wanted(catalog_url, query)
    assert wanted == python_claimed + figures.unassigned["dormant-python:1"] + 2 == 5

    # A pod whose lease ran out no longer holds its slot: the slot counts as unassigned instead.
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        await conn.execute(
            "UPDATE replica_slots SET lease_expires_at = now() - interval '1 second' WHERE pod_id IS NOT NULL"
        )
    assert await pods_wanted(catalog_url, query) == 0 + (3 + 0) + 2

    # The pool's base runtimes decide what it counts.
    node_query = rendered_query(spareFreePods=0)
    assert "'dormant-python:1'" in node_query
    both = helm.Chart.load(CHART).render(
        {"pool": {"baseImages": PY + NODE, "autoscaling": {"mode": "keda", "spareFreePods": 1}}},
        name="dormant",
        namespace="dormant",
    )
    assert await pods_wanted(catalog_url, scaled_query(both)) == 3 + 2 + 1
