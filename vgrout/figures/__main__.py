"""``python -m vgrout.figures``: re-execute every numbered notebook (see runner.py)."""

import sys

from vgrout.figures.runner import main

sys.exit(main())
