"""Where secrets live in OpenBao's KV v2 engine, and the policy that scopes one function to its own.

Shared secrets are ``{mount}/dormant/shared/{name}``, a function's own ``{mount}/dormant/functions/
{service}/{name}``. A function's policy ``dormant-fn-{service}`` grants read on its own secrets and on
the shared names its environment references, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from dormant_catalog.environment import SECRET_NAME

DEFAULT_MOUNT = "secret"
PREFIX = "dormant"
POLICY_PREFIX = "dormant-fn-"
RUNTIME_ROLE = "dormant-runtime"
SIDECAR_POLICY = "dormant-sidecar"


def check_name(name: str) -> str:
    """``name`` if it is a valid secret name, else ``ValueError``."""
    if not SECRET_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a secret name (1 to 128 letters, digits, '_', '.' or '-')")
    return name


def shared_path(name: str) -> str:
    return f"{PREFIX}/shared/{check_name(name)}"


def function_dir(service: str) -> str:
    return f"{PREFIX}/functions/{service}"


def function_path(service: str, name: str) -> str:
    return f"{function_dir(service)}/{check_name(name)}"


def policy_name(service: str) -> str:
    return f"{POLICY_PREFIX}{service}"


def function_policy(service: str, shared_names: Iterable[str], *, mount: str = DEFAULT_MOUNT) -> str:
    """The HCL of ``dormant-fn-{service}``: read its own secrets and the named shared ones."""
    rules = [f'path "{mount}/data/{function_dir(service)}/*" {{\n  capabilities = ["read"]\n}}']
    for name in sorted(set(shared_names)):
        rules.append(f'path "{mount}/data/{shared_path(name)}" {{\n  capabilities = ["read"]\n}}')
    return "\n".join(rules) + "\n"


def sidecar_policy() -> str:
    """The sidecar's policy: create tokens for the runtime role, nothing else (no secret reads)."""
    return f'path "auth/token/create/{RUNTIME_ROLE}" {{\n  capabilities = ["update"]\n}}\n'
