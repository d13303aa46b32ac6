"""``python -m vgrout.figures``: re-execute every numbered notebook (see runner.py)."""

import sys

from vgrout import cli
from vgrout.figures.runner import main

sys.exit(cli.run(main, "python -m vgrout.figures"))
