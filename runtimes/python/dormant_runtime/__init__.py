"""The Python base runtime: loads one app layer and serves its functions over MQTT.

``python -m dormant_runtime`` is started by a pod's sidecar (see ``control``) or by hand with
``--app-dir`` for local work and benchmarks.
"""
