"""Loading an unpacked app layer: find its generated dispatch module and return its ServiceSpec."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from dormant.app import ServiceSpec


class LoadError(Exception):
    """The app layer cannot be loaded (missing glue, import error in user code)."""


def load_service(app_dir: Path) -> ServiceSpec:
    """Import ``generated.dispatch`` from ``app_dir`` and return its ``SERVICE``."""
    app_dir = app_dir.resolve()
    if not (app_dir / "generated" / "dispatch.py").is_file():
        raise LoadError(f"{app_dir} has no generated/dispatch.py: run `dormant generate` on the service")
    sys.path.insert(0, str(app_dir))
    try:
        module = importlib.import_module("generated.dispatch")
    except Exception as exc:
        raise LoadError(f"importing the app layer failed: {type(exc).__name__}: {exc}") from exc
    spec = getattr(module, "SERVICE", None)
    if not isinstance(spec, ServiceSpec):
        raise LoadError("generated/dispatch.py does not define SERVICE as a dormant.app.ServiceSpec")
    return spec
