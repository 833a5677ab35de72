"""The Dormant sidecar (``dormant pod``): claims replica slots and supervises the runtime serving them."""

from .pod import Pod
from .run import run_pod, serve_pod

__all__ = ["Pod", "run_pod", "serve_pod"]
