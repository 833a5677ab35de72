"""What ``import dormant`` gives function authors and callers (like httpx's ``test_exported_members``).

The public surface is ``dormant.__all__`` plus the public modules in ``PUBLIC_MODULES``; every other
module of the SDK has a private name (``dormant._dispatch``, ``dormant._control``, ...), so a new
internal module cannot become public by accident.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import dormant

EXPORTED = [
    "ANONYMOUS",
    "Authorizer",
    "BusinessLogicError",
    "Client",
    "Conflict",
    "Context",
    "DataStore",
    "DormantError",
    "Forbidden",
    "FunctionSpec",
    "Messaging",
    "NotFound",
    "QueryResult",
    "ServiceSpec",
    "SystemError",
    "Throttled",
    "TimeoutError",
    "Unauthenticated",
    "Unavailable",
    "UserContext",
    "ValidationError",
    "function",
    "service",
]

PUBLIC_MODULES = {
    "app",  # ServiceSpec / FunctionSpec: what generated/dispatch.py builds
    "authorizer",
    "callid",
    "client",
    "config",
    "context",
    "datastore",
    "decorators",
    "errors",
    "messaging",
    "migrations",
    "mqtt",
    "routing",
    "testing",
    "transport",
    "wire",
}


def test_all_is_exactly_the_public_api() -> None:
    assert dormant.__all__ == EXPORTED


def test_every_exported_name_resolves_to_a_public_module() -> None:
    for name in dormant.__all__:
        value = getattr(dormant, name)
        module = getattr(value, "__module__", None) or type(value).__module__
        assert module.startswith("dormant."), (name, module)
        assert not any(part.startswith("_") for part in module.split(".")), (name, module)
        assert module.split(".")[1] in PUBLIC_MODULES, (name, module)


def test_from_dormant_import_each_name() -> None:
    namespace: dict[str, object] = {}
    exec(f"from dormant import {', '.join(EXPORTED)}", namespace)
    assert all(namespace[name] is getattr(dormant, name) for name in EXPORTED)


def test_unknown_names_raise_attribute_error() -> None:
    try:
        dormant.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("dormant.NoSuchThing resolved")


def test_internal_modules_have_private_names() -> None:
    names = {m.name for m in pkgutil.iter_modules(dormant.__path__)}
    public = {n for n in names if not n.startswith("_")}
    assert public == PUBLIC_MODULES, sorted(public ^ PUBLIC_MODULES)


def test_the_sdk_loads_no_other_dormant_package() -> None:
    """Importing every public SDK module pulls in none of Dormant's other packages."""
    modules = ", ".join(f"dormant.{m}" for m in sorted(PUBLIC_MODULES))
    code = (
        f"import sys, dormant, {modules}\n"
        "dormant.Client\n"
        "import dormant.transport.aiomqtt_transport\n"
        "print(sorted({n.split('.')[0] for n in sys.modules if n.startswith('dormant')}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(root / "libs/python"), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "['dormant']", out.stdout + out.stderr
