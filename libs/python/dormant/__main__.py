"""``python -m dormant``: the same as the ``dormant`` console script."""

import sys

from .cli import main

sys.exit(main())
