"""``@service`` and ``@function``: how function authors mark handler classes and methods.

The decorators only attach metadata; codegen reads the same facts from the source with ``ast``
(so it never imports user code), and generated glue wires them to the runtime.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from .app import AUTH_MODES, MAX_TIMEOUT_S, MIN_TIMEOUT_S, AuthMode

SERVICE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_VERSION_LIKE_RE = re.compile(r"^v[0-9]+$")
ROLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
ROLE_RULE = "letters, digits and _ . : / -, at most 128 characters"

SERVICE_ATTR = "__dormant_service__"
FUNCTION_ATTR = "__dormant_function__"

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


def is_valid_service_name(name: str) -> bool:
    """Lowercase letters, digits and dashes, at most 64 characters."""
    return bool(SERVICE_NAME_RE.match(name))


def is_valid_function_name(name: str) -> bool:
    """``[A-Za-z][A-Za-z0-9_]*`` and never ``v<digits>`` (that would read as a version topic)."""
    return bool(FUNCTION_NAME_RE.match(name)) and not _VERSION_LIKE_RE.match(name)


def is_valid_role(role: object) -> bool:
    """A role name a ``@function(roles=...)`` may require: letters, digits and ``_ . : / -``."""
    return isinstance(role, str) and bool(ROLE_RE.match(role))


def service(name: str, *, auth: AuthMode = "required") -> Callable[[C], C]:
    """Mark a class as the handler class of service ``name``.

    ``auth`` says which calls it takes: ``"required"`` (the default) only calls with a bearer token the
    runtime verified; ``"optional"`` also calls without one (``ctx.user`` is anonymous then; a token
    that is present must still verify); ``"off"`` never looks at a token (every caller is anonymous).
    """
    if not is_valid_service_name(name):
        raise ValueError(f"invalid service name {name!r}: use [a-z0-9-], at most 64 characters")
    if auth not in AUTH_MODES:
        raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")

    def mark(cls: C) -> C:
        setattr(cls, SERVICE_ATTR, name)
        return cls

    return mark


def function(
    name: str,
    *,
    input: str | None = None,
    output: str | None = None,
    timeout: float | None = None,
    roles: tuple[str, ...] | list[str] = (),
) -> Callable[[F], F]:
    """Mark an async method as function ``name``.

    ``input``/``output`` name the schemas when they differ from the method's annotations;
    ``timeout`` (1-900 s) bounds one execution; ``roles``, when given, are the roles of which the
    caller's verified token must hold at least one (else ``Forbidden``, and the handler does not run).
    """
    if not is_valid_function_name(name):
        raise ValueError(f"invalid function name {name!r}: use [A-Za-z][A-Za-z0-9_]*, not v<digits>")
    if timeout is not None and not MIN_TIMEOUT_S <= timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be between {MIN_TIMEOUT_S:g} and {MAX_TIMEOUT_S:g} seconds")
    bad_roles = [role for role in roles if not is_valid_role(role)]
    if isinstance(roles, str) or bad_roles:
        raise ValueError(f"roles must be a list of role names ({ROLE_RULE}), got {roles!r}")

    def mark(method: F) -> F:
        setattr(
            method,
            FUNCTION_ATTR,
            {"name": name, "input": input, "output": output, "timeout": timeout, "roles": tuple(roles)},
        )
        return method

    return mark
