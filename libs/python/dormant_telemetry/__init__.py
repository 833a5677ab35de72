"""Dormant's telemetry for its processes (gateway, controller, sidecar, runtime): structured logs
(``dormant_telemetry.logs``), traces (``dormant_telemetry.tracing``) and metrics
(``dormant_telemetry.metrics``), each a module of its own, imported where used.

A leaf package: it imports none of Dormant's other packages, so every component can use it. The SDK
(``dormant``) does not import it; what the SDK needs of tracing it takes from ``opentelemetry-api``.
"""
