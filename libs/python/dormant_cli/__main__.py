"""``python -m dormant_cli``: the same as the ``dormant`` console script."""

import sys

from . import main

sys.exit(main())
