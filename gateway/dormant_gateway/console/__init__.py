"""The gateway's read-only web console: services, versions, aliases and weights, the pod pool, and a
rollout as it happens (its steps, the weights over time, live per-version rate, error rate and p99, the
reason of a rollback).

The page is three static files (``static/``: plain HTML, CSS and JavaScript, no build step, nothing
fetched from elsewhere) served without a token; every figure on it comes from the JSON endpoints in
``data``, which need a bearer token with a read role. The page takes the token from its URL's fragment
(``/console/#token=...``, which browsers never send to a server: ``dormant console`` prints such a
URL), keeps it in ``sessionStorage`` for the tab, removes it from the address bar, and sends it as
``Authorization: Bearer``. It renders all data as text (no HTML from data), and the page's
Content-Security-Policy allows only its own script, style and ``fetch`` to its own origin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dormant.errors import NotFound

from . import data
from .data import stop

__all__ = ["routes", "stop"]

PREFIX = "/console"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


async def page(request: Request) -> Response:
    return _serve("index.html")


async def asset(request: Request) -> Response:
    name = str(request.path_params["asset"])
    if name not in ASSETS or name == "index.html":
        raise NotFound(f"no console file {name!r}")
    return _serve(name)


async def to_page(request: Request) -> Response:
    # Relative, so the page's relative URLs (its files, its API) resolve under /console/ behind any prefix.
    return RedirectResponse("console/", status_code=308)


def routes() -> list[Route]:
    return [
        Route(PREFIX, to_page, methods=["GET"]),
        Route(f"{PREFIX}/", page, methods=["GET"]),
        Route(f"{PREFIX}/api/overview", data.overview, methods=["GET"]),
        Route(f"{PREFIX}/api/services/{{name}}", data.service, methods=["GET"]),
        Route(f"{PREFIX}/{{asset}}", asset, methods=["GET"]),
    ]
