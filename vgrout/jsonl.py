"""Read jsonl files with errors that name the file and line (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


def iter_jsonl(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[str, object]]:
    """Yield ("file:line", parsed value) for every non-blank line.

    A line that is not valid JSON raises `error` naming its file and line, so
    a hand-edited data file fails where it is broken, not somewhere later.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: not valid JSON: {e.msg}") from None
