"""The seed's validation rules for function settings (FR-FN-001, 007, 008), as pure functions.

Each returns the settings in storage form (snake_case columns) or raises ``ValidationError`` whose
``details.errors`` lists ``{path, message}`` for every violation.
"""

from __future__ import annotations

import re
from typing import Any

from dormant.errors import ValidationError
from dormant_catalog.environment import environment_problems

SUPPORTED_RUNTIMES = ("python3.11",)
NAME = re.compile(r"^[a-z0-9-]{1,64}$")
HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
MAX_TAGS = 50
MAX_DESCRIPTION = 256

FIELDS = {
    "runtime": "runtime",
    "handler": "handler",
    "memorySize": "memory_mb",
    "timeout": "timeout_s",
    "environment": "environment",
    "tags": "tags",
    "description": "description",
}


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def raise_if_any(self, what: str) -> None:
        if self.items:
            first = self.items[0]
            raise ValidationError(
                f"invalid {what}: {first['path']}: {first['message']}", {"errors": self.items}
            )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_memory(value: Any, errors: _Errors, path: str = "/memorySize") -> None:
    number = _int(value)
    if number is None or not 128 <= number <= 10240 or number % 64:
        errors.add(path, "memory must be an integer from 128 to 10240 MB in steps of 64")


def check_timeout(value: Any, errors: _Errors, path: str = "/timeout") -> None:
    number = _int(value)
    if number is None or not 1 <= number <= 900:
        errors.add(path, "timeout must be an integer from 1 to 900 seconds")


def check_environment(value: Any, errors: _Errors, path: str = "/environment") -> None:
    # The rules belong to the catalog (dormant env applies them too).
    for key, why in environment_problems(value):
        errors.add(f"{path}/{key}" if key else path, why)


def check_tags(value: Any, errors: _Errors) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        errors.add("/tags", "tags must be an object of string values")
    elif len(value) > MAX_TAGS:
        errors.add("/tags", f"at most {MAX_TAGS} tags")


def _check_field(field: str, value: Any, errors: _Errors) -> None:
    if field == "runtime" and value not in SUPPORTED_RUNTIMES:
        errors.add("/runtime", f"runtime must be one of {', '.join(SUPPORTED_RUNTIMES)}")
    elif field == "handler" and not (
        isinstance(value, str) and len(value) <= 128 and HANDLER.fullmatch(value)
    ):
        errors.add(
            "/handler", "handler must look like file.function (for Python: module.Class or module.func)"
        )
    elif field == "memorySize":
        check_memory(value, errors)
    elif field == "timeout":
        check_timeout(value, errors)
    elif field == "environment":
        check_environment(value, errors)
    elif field == "tags":
        check_tags(value, errors)
    elif field == "description" and not (isinstance(value, str) and len(value) <= MAX_DESCRIPTION):
        errors.add("/description", f"description must be a string of at most {MAX_DESCRIPTION} characters")


def validate_create(body: dict[str, Any]) -> dict[str, Any]:
    """A create request: ``name``, ``runtime`` and ``handler`` required; the rest defaulted."""
    errors = _Errors()
    name = body.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        errors.add("/name", "name must be 1 to 64 lowercase letters, digits or dashes")
    for required in ("runtime", "handler"):
        if required not in body:
            errors.add(f"/{required}", "required")
    for key in body:
        if key != "name" and key not in FIELDS:
            errors.add(f"/{key}", "unknown field")
    for field, value in body.items():
        if field in FIELDS:
            _check_field(field, value, errors)
    errors.raise_if_any("function")
    return {
        "name": name,
        "runtime": body["runtime"],
        "handler": body["handler"],
        "memory_mb": body.get("memorySize", 256),
        "timeout_s": body.get("timeout", 30),
        "environment": body.get("environment", {}),
        "tags": body.get("tags", {}),
        "description": body.get("description", ""),
    }


def validate_update(body: dict[str, Any]) -> dict[str, Any]:
    """An update: any subset of the settings (not the name)."""
    errors = _Errors()
    if not body:
        errors.add("", "nothing to change")
    for key, value in body.items():
        if key not in FIELDS:
            errors.add(f"/{key}", "unknown field" if key != "name" else "a function cannot be renamed")
        else:
            _check_field(key, value, errors)
    errors.raise_if_any("update")
    return {FIELDS[key]: value for key, value in body.items()}


def validate_environment(body: dict[str, Any]) -> dict[str, str]:
    """``{"variables": {...}}`` (the seed's shape)."""
    errors = _Errors()
    if set(body) != {"variables"}:
        errors.add("/variables", 'the body must be {"variables": {NAME: value, ...}}')
        errors.raise_if_any("environment")
    check_environment(body["variables"], errors, "/variables")
    errors.raise_if_any("environment")
    variables: dict[str, str] = body["variables"]
    return variables


def validate_concurrency(body: dict[str, Any]) -> dict[str, Any]:
    """Pre-provisioned and maximum concurrency, keep-warm on/off and interval (PT1M..PT1H)."""
    errors = _Errors()
    allowed = {"preProvisionedConcurrency", "keepWarmEnabled", "keepWarmInterval", "maxConcurrency"}
    for key in body:
        if key not in allowed:
            errors.add(f"/{key}", "unknown field")
    for key in ("preProvisionedConcurrency", "maxConcurrency"):
        if key in body:
            number = _int(body[key])
            if number is None or not 0 <= number <= 10000:
                errors.add(f"/{key}", "an integer from 0 to 10000")
    if "keepWarmEnabled" in body and not isinstance(body["keepWarmEnabled"], bool):
        errors.add("/keepWarmEnabled", "true or false")
    if "keepWarmInterval" in body:
        seconds = iso_duration_s(body["keepWarmInterval"])
        if seconds is None or not 60 <= seconds <= 3600:
            errors.add("/keepWarmInterval", "an ISO 8601 duration from PT1M to PT1H")
    errors.raise_if_any("concurrency")
    return dict(body)


_DURATION = re.compile(r"^PT(?:([0-9]{1,6})H)?(?:([0-9]{1,6})M)?(?:([0-9]{1,6})S)?$")


def iso_duration_s(value: Any) -> int | None:
    """Seconds in an ISO 8601 time duration such as ``PT5M`` (None if it is not one)."""
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds
