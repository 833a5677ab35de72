"""TypeScript (Node.js) services: detection, the toolchain they are read and compiled with, and the
Node branch of ``generate`` and ``build``.

A Node service directory holds ``package.json`` with a ``"dormant"`` object (the marker), ``tsconfig.json``,
``schemas/*.json`` (the format the Python services use) and ``src/**/*.ts`` with one ``@service`` class.
``reader`` reads it (TypeScript's parser, in a ``node`` child process) into the records the Python reader
makes; ``generate`` writes its ``generated/``; ``compile`` turns it into an app layer with ``dist/*.js``.
"""

from __future__ import annotations

import json
from pathlib import Path

NODE_BASE_RUNTIME = "dormant-node:1"
PACKAGE_FILE = "package.json"
TSCONFIG_FILE = "tsconfig.json"
SOURCE_DIR = "src"
DIST_DIR = "dist"
MARKER_KEY = "dormant"


def is_node_service(service_dir: Path) -> bool:
    """Whether ``service_dir`` is a Node service: its ``package.json`` is a JSON object with a ``"dormant"``
    key (an unreadable ``package.json`` that mentions ``"dormant"`` counts too, so its errors are reported
    instead of a search for Python modules)."""
    try:
        text = (Path(service_dir) / PACKAGE_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        data = json.loads(text)
    except ValueError:
        return f'"{MARKER_KEY}"' in text
    return isinstance(data, dict) and MARKER_KEY in data
