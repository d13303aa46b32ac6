"""Command-line entry points report bad input as one line, not a traceback (no torch).

A researcher who mistypes a field or points at a malformed file should read
what is wrong and where ("data/x.jsonl:3: missing field 'mode'"), not forty
lines of stack. The errors that mean "your input is wrong" are the ones the
library raises with that message: ValueError (an inconsistent config, a
malformed problem, pair or log file), FileNotFoundError and FileExistsError.
They exit with status 2, as argparse does for a bad flag; anything else is a
bug or a failure of the run and keeps its traceback. `--debug` keeps the
traceback for input errors too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


def add_debug_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--debug", action="store_true", help="show the full traceback of an input error"
    )


def run(main: Callable[[list[str]], int | None], prog: str, argv=None) -> int:
    """Call main(argv); an input error becomes `prog: error: message` and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv) or 0
    except INPUT_ERRORS as e:
        if "--debug" in argv:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2


def one_line(e: BaseException) -> str:
    """The message on one line: a multi-line one (a config with several problems) joined."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()
