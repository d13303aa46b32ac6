"""Files: atomic writes and jsonl reading with errors that name the file and line (no torch).

Writes go to a temp file (or folder) beside the target, then rename.

A crash (or a kill) mid-write then leaves the old file or the new one, never
a torn one, which is what lets a run or a figure build be resumed safely.
The temp-then-rename lives here only: `atomic_write` for a file, `atomic_dir`
for a folder, so the promise is kept (or broken) in one place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from vgrout.paths import repo_path


def _umask() -> int:
    """The process umask, read without changing it where the system allows.

    Linux reports it in /proc; elsewhere os.umask can only read it by setting
    it, so it is set to a common default for that instant and restored.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call write(temp_path), then rename the temp file onto `path`.

    The file gets the permissions a plain ``open(path, "w")`` would give it,
    not the owner-only ones of the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_dir(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Call fill(temp_folder) on an empty folder beside `path`, then swap it in for `path`.

    For artefacts that are folders (a saved model, an exported adapter): a
    reader never sees a folder with only some of its files. An existing
    `path` is replaced; if `fill` raises, the temp folder is removed and
    `path` is left as it was. The folder gets the permissions of a plain
    ``mkdir``, not the owner-only ones of the temp folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_dir(tmp: Path, path: Path) -> None:
    """Move a finished folder onto `path`; the previous one is removed only afterwards.

    A folder cannot be renamed over a non-empty one, so the old one is moved
    aside first: a crash in between leaves it under '<name>.old-<pid>', never
    a half-deleted folder under `path`.
    """
    old = None
    if path.exists():
        old = path.with_name(f"{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old)


def save_json(obj, path: str | Path) -> Path:
    """JSON (indented, sorted keys) written atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"
    return atomic_write(repo_path(path), lambda tmp: Path(tmp).write_text(text))


def iter_jsonl(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[str, Any]]:
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
