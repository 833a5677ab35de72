"""Where the command's catalog and broker URLs came from, and the one line it prints when it cannot
reach one: the URL it tried, where that URL came from, and how to point elsewhere.

The URLs themselves are resolved by ``dormant.config.Settings`` (flag, then ``DORMANT_*``, then the
running dev mesh's ``.dormant/dev/mesh.json``, then the default); this module only names the source.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Literal

from dormant.config import dev_mesh

Kind = Literal["catalog", "broker"]


@dataclass(frozen=True, slots=True)
class _Source:
    flag: str
    env: str
    mesh_key: str
    what: str


_SOURCES: dict[Kind, _Source] = {
    "catalog": _Source("--catalog-url", "DORMANT_CATALOG_URL", "catalogUrl", "the catalog (Postgres)"),
    "broker": _Source("--broker-url", "DORMANT_BROKER_URL", "brokerUrl", "the broker (MQTT)"),
}
_NOISE = re.compile(r"^(catalog database unreachable: |connection failed: |cannot connect to the broker: )+")


def source_of(args: argparse.Namespace, kind: Kind) -> str:
    """``flag``, ``env``, ``dev-mesh`` or ``default``: where ``kind``'s URL came from."""
    source = _SOURCES[kind]
    if getattr(args, source.flag[2:].replace("-", "_"), None):
        return "flag"
    if os.environ.get(source.env):
        return "env"
    if dev_mesh().get(source.mesh_key):
        return "dev-mesh"
    return "default"


def redact(url: str) -> str:
    """``url`` without a password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def first_line(error: BaseException | str) -> str:
    """The gist of a driver's error: its first line, without the wrappers' prefixes."""
    text = str(error).strip().splitlines()
    return _NOISE.sub("", " ".join(text[0].split())) if text else type(error).__name__


def unreachable(kind: Kind, url: str, source: str, error: BaseException | str) -> str:
    """``cannot reach the catalog (Postgres) at URL (where it came from): why; how to point elsewhere``."""
    s = _SOURCES[kind]
    origin = {
        "flag": f"given by {s.flag}",
        "env": f"from ${s.env}",
        "dev-mesh": "from .dormant/dev/mesh.json: is `dormant dev` still running?",
        "default": "the default: no dev mesh is running in this project",
    }.get(source, source)
    return (
        f"cannot reach {s.what} at {redact(url)} ({origin}): {first_line(error)};"
        f" start a dev mesh with `dormant dev`, or point elsewhere with {s.env} or {s.flag}"
    )
