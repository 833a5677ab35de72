"""What ``dormant dev`` does to the service it serves: bring it up at start-up without clobbering what is
live, and, with ``--watch``, rebuild, publish and deploy it on every saved change.

Start-up (``DevService.start``): build the directory; publish it unless a version with the very same
image (the build is deterministic, so the image digest is a digest of the content) is registered
already; deploy it only when the service has no live deployment. So restarting ``dormant dev`` on the
same state neither registers a new version nor moves traffic away from whatever was deployed since.

Watch (``DevService.watch``): on each batch of changed sources (``dormant_local.watch``), generate,
import-check, pack and register the new version and deploy it all at once on the deployment's replica
count, then wait until every replica serves it. A change that does not build prints the diagnostics
and leaves the serving version alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO, TypeVar

from dormant_catalog import Catalog, CatalogError
from dormant_codegen import BuildResult, CodegenError, build, check_import, generate
from dormant_codegen.generator import render_outputs
from dormant_codegen.inputs import source_hash
from dormant_codegen.node import is_node_service
from dormant_codegen.publish import WrongService, register_build
from dormant_layers import open_store
from dormant_local.watch import source_changes

from .deploy_cmd import deploy_and_wait
from .output import Progress, progress, weights_text

T = TypeVar("T")
SERVING_TIMEOUT_S = 90.0
TICK_S = 0.25


@contextlib.asynccontextmanager
async def step(what: str, *, stream: TextIO | None = None) -> AsyncIterator[Progress]:
    """``output.progress`` around an awaited wait: a spinner on a terminal; piped, one line once the
    wait has lasted a second (the ticks give ``progress`` the chance to notice). Yields ``update(text)``
    for a more precise message."""
    latest = what
    with progress(what, stream=stream) as update:

        def say(message: str) -> None:
            nonlocal latest
            latest = message
            update(message)

        async def tick() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                update(latest)

        ticker = asyncio.create_task(tick())
        try:
            yield say
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


class DevService:
    """The service in ``service_dir`` as ``dormant dev`` serves it, through an open ``catalog``."""

    def __init__(
        self,
        service_dir: Path,
        *,
        catalog: Catalog,
        layer_store: str | Path,
        replicas: int,
        out: TextIO | None = None,
    ) -> None:
        self.service_dir = service_dir
        self.catalog = catalog
        self.store = open_store(layer_store)
        self.replicas = replicas
        self.out = out if out is not None else sys.stderr
        self.service = ""
        self.version = 0
        """The version serving (the primary of ``live``)."""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def _build(self) -> BuildResult:
        # Importing the service first (import_check) turns a handler that cannot load into diagnostics
        # here, instead of a pod failing to start it.
        return await asyncio.to_thread(build, self.service_dir, self.store, import_check=True)

    async def _publish(self, result: BuildResult) -> tuple[int, bool]:
        """(version, whether it is new): the newest version with this very image, else a new one."""
        image = str(result.ref)
        service = str(result.interface["service"])
        same = [v.version for v in await self.catalog.list_versions(service) if v.app_layer_image == image]
        if same:
            return same[-1], False
        published = await register_build(
            result, db=self.catalog.db, actor="dev", service=self.service or None, store=self.store
        )
        # On the developer's own dev mesh the developer saving the file is the approval a breaking
        # interface change needs elsewhere (dormant approve): approved here in their name, audited, and said.
        record = await self.catalog.get_compatibility(service, published.version)
        if published.created and record is not None and record.needs_approval:
            await self.catalog.approve_breaking(
                service, published.version, actor="dev", reason="dormant dev: the developer's own mesh"
            )
            self.say(
                f"{service} v{published.version} breaks callers of v{record.compared_to} "
                f"({record.summary()}): approved on this dev mesh"
            )
        return published.version, published.created

    # ------------------------------------------------------------------ start-up

    async def start(self) -> None:
        """Publish and deploy unless already done (see the module doc). Raises ``CodegenError``."""
        async with step(f"building {self.service_dir.name}", stream=self.out):
            result = await self._build()
        service = self.service = str(result.interface["service"])
        version, created = await self._publish(result)
        if created:
            self.say(f"published {service} v{version}")
        else:
            self.say(f"{service} v{version} has this code already; not publishing")
        deployment = await self.catalog.get_deployment(service)
        if deployment is not None and deployment.replicas > 0:
            live_alias = await self.catalog.get_alias(service)
            weights = live_alias.weights if live_alias is not None else {}
            self.version = (live_alias.primary if live_alias else None) or deployment.target_version
            self.replicas = deployment.replicas
            live = weights_text(weights) if len(weights) > 1 else f"v{self.version}"
            hint = (
                ""
                if version in weights
                else f" (to serve v{version}: dormant deploy {service} --version {version})"
            )
            self.say(f"{service} {live} already live; not redeploying{hint}")
            return
        await self._deploy(version)

    async def _deploy(self, version: int) -> bool:
        what = f"waiting for {self.replicas} replica(s) to serve {self.service} v{version}"
        async with step(what, stream=self.out) as update:
            ok, summary = await deploy_and_wait(
                self.catalog.url,
                self.service,
                version,
                self.replicas,
                SERVING_TIMEOUT_S,
                on_wait=lambda status: update(f"{what}: {status.reason}"),
            )
        self.say(summary)
        if ok:
            self.version = version
        return ok

    # ------------------------------------------------------------------ watch

    async def watch(self, stop: asyncio.Event, on_serving: Callable[[int], None] | None = None) -> None:
        """Reload on every batch of saved changes until ``stop`` is set."""
        root = self.service_dir.resolve()
        warm = asyncio.create_task(asyncio.to_thread(self._warm_up))
        batches = source_changes(self.service_dir, stop=stop)
        pending = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0)  # its first step registers the inotify watches: from now on, no save is lost
        kinds = "src/**/*.ts" if is_node_service(self.service_dir) else "*.py"
        self.say(f"watching {self.service_dir} for changes to {kinds} and schemas/*.json")
        while True:
            try:
                changed = await pending
            except StopAsyncIteration:
                return
            await warm  # never alongside a reload: the model generator is not known to be thread-safe
            names = ", ".join(sorted(str(path.relative_to(root)) for path in changed))
            self.say(f"changed: {names}")
            if await self.reload() and on_serving is not None:
                on_serving(self.version)
            pending = asyncio.ensure_future(anext(batches))

    def _warm_up(self) -> None:
        """Render the service once, in memory, so the first reload does not pay for loading the model
        generator (over a second on a busy machine; later runs take milliseconds)."""
        with contextlib.suppress(Exception):
            render_outputs(self.service_dir, source_hash(self.service_dir))

    async def reload(self) -> bool:
        """Build, publish and deploy the directory as it is now; whether a new version serves."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        times: dict[str, float] = {}

        async def timed(name: str, work: Callable[[], T]) -> T:
            start = loop.time()
            try:
                return await asyncio.to_thread(work)
            finally:
                times[name] = loop.time() - start

        keeps = f"{self.service} v{self.version} keeps serving"
        try:
            # build() does all three; running the first two on their own first only shows where the
            # time goes (build finds them done: the generate stamp and the import-check cache match).
            await timed("generate", lambda: generate(self.service_dir))
            if not is_node_service(self.service_dir):  # a Node service's check is its compile, in build()
                await timed("import check", lambda: check_import(self.service_dir))
            result = await timed("pack", lambda: build(self.service_dir, self.store, import_check=True))
            start = loop.time()
            version, created = await self._publish(result)
            times["publish"] = loop.time() - start
        except CodegenError as exc:
            for diagnostic in exc.diagnostics:
                self.say(str(diagnostic))
            self.say(f"not deployed: the change does not build; {keeps}")
            return False
        except WrongService as exc:
            self.say(f"not deployed: {exc} (restart dormant dev to serve another service); {keeps}")
            return False
        except (CatalogError, OSError) as exc:
            self.say(f"not deployed: {exc}; {keeps}")
            return False
        if version == self.version:
            self.say(f"no change: {self.service} v{self.version} has this code")
            return False
        if not created:
            self.say(f"{self.service} v{version} has this code already; deploying it")
        previous = self.version
        start = loop.time()
        try:
            deployment = await self.catalog.get_deployment(self.service)
            if deployment is not None and deployment.replicas > 0:
                self.replicas = deployment.replicas
            if not await self._deploy(version):
                # The pods kept the old version running; point the deployment back at it too, so
                # calls keep reaching it while the change is put right.
                if previous and await self._deploy(previous):
                    self.say(f"back to {self.service} v{previous}")
                return False
        except (CatalogError, OSError) as exc:
            self.say(f"not deployed: {exc}; {keeps}")
            return False
        times["deploy and load"] = loop.time() - start
        spent = ", ".join(f"{name} {seconds:.2f}" for name, seconds in times.items())
        self.say(f"{self.service} v{version} serving {loop.time() - began:.2f} s after the change ({spent})")
        return True


async def watch_changes(service: DevService, stop: asyncio.Event, on_serving: Callable[[int], None]) -> None:
    """``service.watch`` until ``stop``; a reload in progress is cancelled. If watching fails (the
    directory went away), say so and keep the mesh up until ``stop``."""
    watcher = asyncio.create_task(service.watch(stop, on_serving))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({watcher, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done() and not watcher.cancelled() and watcher.exception() is not None:
            service.say(
                f"stopped watching {service.service_dir}: {watcher.exception()}; Ctrl-C stops the mesh"
            )
            await stop.wait()
    finally:
        stopped.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
