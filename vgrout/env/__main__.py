"""``python -m vgrout.env verify PATH.jsonl [--modes ...] [--limit N] [--workers N]``."""

import logging
import sys

from vgrout import cli

from .verify import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sys.exit(cli.run(main, "python -m vgrout.env"))
