"""Conformance suite: one set of black-box MQTT tests for every language runtime (docs/conformance.md)."""
