"""The external reference data, by one command: ``python -m vgrout.env.reference``.

Real LeetCode problems and real hacks written by a 4B model, published with the
vGROUT research code. They are not the project's own data, so they are not in
the repository: this command fetches them from the public repository at one
pinned commit, checks every file against the sha256 listed in
``data/reference.sha256``, and stores them under ``.cache/reference/`` (outside
the tracked tree), where `vgrout.paths.reference_dir` finds them. Notebook 02's
real-hack panel and the tests that read real hacks need them.

The source may be any URL or path git can fetch from (a ``file://`` URL or a
local clone included), so a mirror serves as well as GitHub. Nothing is
written unless every listed file arrived with its hash; a mismatch names the
file and both hashes. Needs git on the PATH (no torch).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from vgrout import cli, paths
from vgrout.files import atomic_dir

SOURCE = "https://github.com/wassname/vGROUT_pub.git"
COMMIT = "c06721892d79dda466d407b10607fb493e58e867"
"""The pinned commit of the public data (2026-06-27)."""
MANIFEST = paths.DATA / "reference.sha256"
"""``<sha256>  <path>`` per file, as `sha256sum` writes it; paths inside the repository."""
SUBDIR = "vgrout_pub"
"""The data land in ``<dest>/vgrout_pub/<path>``: the layout `reference_pool` reads."""
FETCH_COMMAND = "python -m vgrout.env.reference"


class ReferenceError(RuntimeError):
    """The reference data could not be fetched or did not match their hashes."""


def read_manifest(path: str | Path = MANIFEST) -> list[tuple[str, str]]:
    """[(sha256, path)] from a sha256sum-style file; a malformed line raises naming it."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or name.startswith("/") or ".." in name:
            raise ValueError(f"{path}:{lineno}: expected '<64 hex sha256>  <relative path>'")
        out.append((digest, name))
    if not out:
        raise ValueError(f"{path}: lists no files")
    return out


def fetch(
    source: str = SOURCE,
    commit: str = COMMIT,
    dest: str | Path | None = None,
    manifest: str | Path = MANIFEST,
) -> Path:
    """Fetch `commit` of `source`, check every manifest file, store them; the data folder.

    Returns ``<dest>/vgrout_pub`` (dest defaults to ``.cache/reference``).
    """
    if shutil.which("git") is None:
        raise ReferenceError("git is not on the PATH; it is needed to fetch the reference data")
    entries = read_manifest(manifest)
    dest = Path(dest) if dest else paths.CACHE / "reference"
    with tempfile.TemporaryDirectory(prefix="vgrout-reference-") as tmp:
        _git(tmp, "init", "-q")
        _git(tmp, "fetch", "-q", "--depth", "1", source, commit)

        def fill(folder: Path) -> None:
            for digest, name in entries:
                data = _git_blob(tmp, commit, name)
                got = hashlib.sha256(data).hexdigest()
                if got != digest:
                    raise ReferenceError(
                        f"{name}: sha256 {got} at {commit[:10]} of {source}, expected {digest} "
                        f"({manifest}); nothing was written"
                    )
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)

        return atomic_dir(dest / SUBDIR, fill)


def _git(cwd: str, *args: str) -> bytes:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if r.returncode != 0:
        raise ReferenceError(f"git {' '.join(args)}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def _git_blob(cwd: str, commit: str, name: str) -> bytes:
    try:
        return _git(cwd, "cat-file", "blob", f"{commit}:{name}")
    except ReferenceError:
        raise ReferenceError(f"{name}: not in commit {commit[:10]} of the source") from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=FETCH_COMMAND, description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=SOURCE, help="git URL or path (default: %(default)s)")
    ap.add_argument("--commit", default=COMMIT, help="full commit hash (default: the pinned one)")
    ap.add_argument("--dest", default=None, help="folder to store into (default: .cache/reference)")
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    try:
        out = fetch(a.source, a.commit, a.dest)
    except ReferenceError as e:
        print(f"{FETCH_COMMAND}: error: {cli.one_line(e)}", file=sys.stderr)
        return 1
    n = len(read_manifest())
    print(f"reference data: {n} files checked and stored in {out}")
    if a.dest:
        print(f"point the project at them with VGROUT_REFERENCE={Path(out).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, FETCH_COMMAND))
