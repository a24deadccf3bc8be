"""Allow ``python -m frugal_search``."""

import sys

from frugal_search.cli import main

sys.exit(main())
