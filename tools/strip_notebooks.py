"""Strip (or, with --check, refuse) stored outputs in notebooks.

Committed notebooks hold code only: a stale output reads as a result that the
current code never produced. The pre-commit hook (.githooks/pre-commit) runs
this with --check; `python tools/strip_notebooks.py notebooks/*.ipynb` clears
them in place. tests/test_notebooks.py holds the same rule for CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def dirty_cells(nb: dict) -> list[int]:
    """Indices of code cells with outputs or an execution count."""
    return [
        i
        for i, c in enumerate(nb.get("cells", []))
        if c.get("cell_type") == "code"
        and (c.get("outputs") or c.get("execution_count") is not None)
    ]


def strip(nb: dict) -> dict:
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            c["outputs"], c["execution_count"] = [], None
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="report, change nothing; exit 1 if dirty")
    args = ap.parse_args(argv)
    bad = 0
    for path in args.paths:
        nb = json.loads(path.read_text())
        cells = dirty_cells(nb)
        if not cells:
            continue
        if args.check:
            print(f"{path}: cells {cells} hold outputs; run python tools/strip_notebooks.py {path}")
            bad += 1
        else:
            path.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n")
            print(f"{path}: stripped cells {cells}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
