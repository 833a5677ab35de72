"""Loading an unpacked app layer: its ``ServiceSpec``, imported the way ``dormant.testing`` imports it.

The import itself lives in the SDK (``dormant._loader``): the service directory becomes a package of
its own (``dormant_app_<service>``), and the author's ``from generated.models import ...`` resolves
into it. A runtime serves one service, so the plain names are always its own.
"""

from __future__ import annotations

from dormant._loader import LoadError, load_service

__all__ = ["LoadError", "load_service"]
