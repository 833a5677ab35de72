"""``python -m dormant_gateway``."""

import sys

from .main import main

sys.exit(main())
