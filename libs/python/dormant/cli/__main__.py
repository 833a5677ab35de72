"""``python -m dormant.cli``: the same as the ``dormant`` console script."""

import sys

from . import main

sys.exit(main())
