"""``python -m dormant_sidecar``: run one pod (see ``dormant_sidecar.cli``)."""

from .cli import main

raise SystemExit(main())
