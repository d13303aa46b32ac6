"""Files: atomic writes and jsonl reading with errors that name the file and line (no torch).

Writes go to a temp file beside the target, then rename.

A crash (or a kill) mid-write then leaves the old file or the new one, never
a torn one, which is what lets a run or a figure build be resumed safely.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from vgrout.paths import repo_path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call write(temp_path), then rename the temp file onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_json(obj, path: str | Path) -> Path:
    """JSON (indented, sorted keys) written atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"
    return atomic_write(repo_path(path), lambda tmp: Path(tmp).write_text(text))


def iter_jsonl(
    path: str | Path, error: type[Exception] = ValueError
) -> Iterator[tuple[str, object]]:
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
