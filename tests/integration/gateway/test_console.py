"""The gateway's web console in a real headless Chromium (Debian's, driven by Playwright), on a real mesh:
it shows a canary's weights and steps while the canary waits for calls, then, once a failing version has
answered enough calls, the rollback and its reason, the live per-version figures and the pod pool; the
screenshot it takes then is the one docs/observability.md shows. Its data endpoints refuse a missing or
invalid token (401) and a token without a read role (403); the page shell is public, and says so."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gw_helpers import ROOT, GatewayProcess, child_env, new_gateway
from playwright.async_api import Browser, Page, async_playwright, expect

from dormant_local import MosquittoProcess

if str(ROOT / "tests" / "integration" / "rollouts") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "integration" / "rollouts"))

from e2e.mesh import Mesh, clear_retained, running_mesh
from rollout_helpers import SERVICE, publish_version, start_controller, steady_calls, wait_routes

SCREENSHOT = ROOT / "docs" / "images" / "console.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000
"""How long the page may take to show a state the mesh has reached (it polls every second)."""


@pytest_asyncio.fixture
async def mesh(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    with running_mesh(broker.url, catalog_url, tmp_path) as m:
        yield m
    await clear_retained(broker.url, [SERVICE])


@pytest_asyncio.fixture
async def gateway(mesh: Mesh, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    process = new_gateway(mesh, tmp_path, "gw-console")
    try:
        await process.start()
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """One Chromium for the module (started once: it is a few seconds of CPU each time)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def browser(chromium: Browser) -> AsyncIterator[Browser]:
    """The module's Chromium; every page a test opened (each in a context of its own) is closed after
    the test, so none goes on polling a gateway that is gone."""
    try:
        yield chromium
    finally:
        for context in chromium.contexts:
            await context.close()


async def new_page(browser: Browser) -> tuple[Page, list[str]]:
    """A page, and the script errors and console errors it reports (a refused resource, such as the
    401s the sign-in tests cause, is not one; a Content-Security-Policy violation is)."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="light")
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    return page, problems


@pytest.mark.slow
@pytest.mark.timeout(300)  # each wait is bounded (WAIT_MS); together past 120 s on a loaded machine
async def test_the_console_shows_a_canary_then_its_rollback_and_the_reason(
    mesh: Mesh, gateway: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    v1 = await publish_version(mesh, tmp_path)
    v2 = await publish_version(mesh, tmp_path, fail_every=2)  # every other call of `work` fails
    await mesh.deploy(SERVICE, v1, replicas=1)
    mesh.start_pod("pod-a")
    mesh.start_pod("pod-b")
    mesh.pods["controller"] = start_controller(mesh)
    await mesh.wait_serving(SERVICE)
    await wait_routes(mesh.broker_url, {v1: 100})

    # `dormant console` prints the URL, signed in with a viewer token of the gateway's dev key.
    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dormant_cli", "console", "--gateway-url", gateway.url),
        *("--state-dir", str(gateway.state_dir)),
        env=child_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0
    printed = out.decode().strip()
    assert printed.startswith(f"{gateway.url}/console/#token="), printed
    page, problems = await new_page(browser)
    await page.goto(printed)
    services = page.locator("#services")
    await expect(services.locator(f'tr[data-service="{SERVICE}"]')).to_be_visible(timeout=WAIT_MS)
    assert "token" not in page.url  # moved into sessionStorage at once
    live = page.locator('#aliases .weight[data-alias="live"]')
    await expect(live).to_have_text([f"v{v1} 100 %"], timeout=WAIT_MS)
    pool = page.locator("#pool")
    # Two pods: one claimed, serving v1 (whichever claimed the slot first), one free.
    await expect(pool.locator('tr[data-state="serving"]', has_text=f"{SERVICE} v{v1}")).to_have_count(1)
    await expect(pool.locator('tr[data-state="free"]')).to_have_count(1)
    await expect(page.locator("#pool-summary")).to_have_text(
        "2 pods: 1 claimed (1 serving, 0 starting), 1 free."
    )

    # A canary with no traffic waits at its first step: the console shows its weights and steps.
    config = {
        "increments": [25, 100],
        "canaryDuration": "PT1S",
        "rollbackThresholds": {"errorRate": 0.05},
        "minSamples": 20,
    }
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=gateway.headers("operator"), timeout=30
    ) as http:
        started = await http.post(
            "/api/v1/deployments",
            json={"functionName": SERVICE, "version": v2, "strategy": "Canary", "config": config},
        )
        assert started.status_code == 201, started.text
    await expect(live).to_have_text([f"v{v1} 75 %", f"v{v2} 25 %"], timeout=WAIT_MS)
    await expect(services.locator(f'tr[data-service="{SERVICE}"] .weight')).to_have_text(
        [f"v{v1} 75 %", f"v{v2} 25 %"]
    )
    await expect(page.locator("#rollout-state")).to_have_text("running")
    steps = page.locator("#rollout-steps li")
    await expect(steps.locator(".share")).to_have_text(["25 %", "100 %"])
    await expect(steps.nth(0)).to_have_attribute("aria-current", "step")
    await expect(page.locator("#rollout-progress")).to_contain_text("calls needed to judge", timeout=WAIT_MS)
    await expect(pool.locator('tr[data-state="serving"]', has_text=f"{SERVICE} v{v2}")).to_have_count(1)
    await expect(pool.locator('tr[data-state="free"]')).to_have_count(0)
    await expect(page.locator("#weight-history tbody tr").first).to_contain_text(f"v{v1} 75 %, v{v2} 25 %")

    # Traffic: v2 fails every other call, so the controller rolls back once it has 20 calls of v2.
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop, rate=20.0))
    try:
        await expect(page.locator("#rollout-state")).to_have_text("rolled-back", timeout=WAIT_MS)
        await expect(live).to_have_text([f"v{v1} 100 %"])
        reason = page.locator("#rollout-reason")
        await expect(reason).to_be_visible()
        await expect(reason).to_contain_text("error rate")
        await expect(steps.nth(0)).to_have_class("step step-failed")
        # The live figures: v2's errors of the last minute, v1 still answering.
        await expect(
            page.locator(f'#live tr[data-version="{v2}"] td[data-figure="errors"]')
        ).not_to_have_text("0", timeout=WAIT_MS)
        await expect(page.locator(f'#live tr[data-version="{v1}"] td[data-figure="rate"]')).not_to_have_text(
            "0.0", timeout=WAIT_MS
        )
        await expect(page.locator("#charts svg")).to_have_count(3)
        # v2's slot is retired after the rollback: its pod goes back to the pool.
        await expect(pool.locator('tr[data-state="free"]')).to_have_count(1, timeout=WAIT_MS)
        await expect(pool.locator("tr", has_text=f"{SERVICE} v{v2}")).to_have_count(0)
        await page.wait_for_timeout(1500)  # one more poll, so the charts show a few seconds after it
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        stop.set()
        await load
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("viewer"), timeout=30) as http:
        rollout: dict[str, Any] = (await http.get(f"/api/v1/deployments/{SERVICE}")).json()["rollout"]
    assert rollout["state"] == "rolled-back"
    await expect(reason).to_have_text(f"Rolled back: {rollout['reason']}")
    print(f"console showed: rolled back: {rollout['reason']}")
    assert problems == []


async def test_console_data_needs_a_token_with_a_read_role(
    mesh: Mesh, gateway: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    await mesh.publish(ROOT / "tests" / "fixtures" / "services" / "probe-service")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        for path in ("/console/api/overview", f"/console/api/services/{SERVICE}"):
            assert (await http.get(path)).status_code == 401
            bad = await http.get(path, headers={"Authorization": "Bearer not-a-token"})
            assert bad.status_code == 401 and bad.json()["type"] == "Unauthenticated"
            roleless = await http.get(path, headers=gateway.headers())  # valid, but no role at all
            assert roleless.status_code == 403 and roleless.json()["type"] == "Forbidden"
            viewer = await http.get(path, headers=gateway.headers("viewer"))
            assert viewer.status_code == 200 and viewer.headers["cache-control"] == "no-store"
        missing = await http.get("/console/api/services/no-such-service", headers=gateway.headers("viewer"))
        assert missing.status_code == 404
        for bad in ("Bad%20Name", "%00", "a" * 65, "probe-service%0A", "%E2%80%AE"):
            refused = await http.get(f"/console/api/services/{bad}", headers=gateway.headers("viewer"))
            assert refused.status_code == 400, (bad, refused.text)
        # The shell is public and strict: its own script and style only, never framed.
        shell = await http.get("/console/")
        assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
        csp = shell.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert (await http.get("/console/console.js")).headers["content-type"].startswith("text/javascript")
        assert (await http.get("/console/secrets.json")).status_code == 404
        assert (await http.get("/console", follow_redirects=False)).headers["location"] == "console/"
        overview = (await http.get("/console/api/overview", headers=gateway.headers("viewer"))).json()
    assert [s["name"] for s in overview["services"]] == [SERVICE]

    page, problems = await new_page(browser)
    await page.goto(f"{gateway.url}/console")  # redirected to /console/
    await expect(page.locator("#signin-why")).to_have_text("No token yet.", timeout=WAIT_MS)
    await page.goto(f"{gateway.url}/console/#token={gateway.token()}")  # no role
    await expect(page.locator("#signin-why")).to_contain_text("(403)", timeout=WAIT_MS)
    await expect(page.locator("#services-panel")).to_be_hidden()
    await page.goto(f"{gateway.url}/console/#token=forged")
    await expect(page.locator("#signin-why")).to_contain_text("(401)", timeout=WAIT_MS)
    # Pasting a good token signs in.
    await page.fill("#token-input", gateway.token("developer"))
    await page.click("#token-form button")
    await expect(page.locator(f'#services tr[data-service="{SERVICE}"]')).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#detail-h")).to_have_text(SERVICE)
    assert problems == []
