"""Dormant codegen: read a service (``ast`` + JSON schemas), generate its app layer, build and push it.

``dormant_codegen.publish`` (not imported here: it needs the catalog) builds and registers a version.
"""

from .builder import BuildResult, build
from .diagnostics import CodegenError, Diagnostic
from .generator import GenerateResult, generate
from .importcheck import check_import
from .service import ServiceSource, read_service

__all__ = [
    "BuildResult",
    "CodegenError",
    "Diagnostic",
    "GenerateResult",
    "ServiceSource",
    "build",
    "check_import",
    "generate",
    "read_service",
]
