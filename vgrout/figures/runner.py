"""``python -m vgrout.figures``: re-execute every numbered notebook, write the manifest.

Runs ``notebooks/NN_*.ipynb`` in order with papermill. Full mode (the
default, `make figures`) passes each notebook the parameters in
``notebooks/params/NN_*.yaml``; ``--quick`` passes none, so each notebook
runs on the quick defaults of its ``parameters`` cell (the ones nbval uses).
The driver itself injects ``figures_dir``, so a yaml must not set it.

Outputs: executed copies under ``out/notebooks/`` (``out/quick/notebooks/``
with ``--quick``), figures and their csv files under ``figures/``
(``out/quick/figures/`` with ``--quick``, so a quick run never overwrites the
committed full-configuration figures), and ``<figures_dir>/manifest.json``:
the effective parameters of every notebook, the git revision, the date and
each notebook's wall time. A failed notebook stops the run: the error names
the notebook, the failing cell and papermill's message, and the manifest
records the failure.

Notebooks are found by glob, so a new ``NN_*.ipynb`` joins the run as soon as
it and its params yaml exist.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from vgrout import cli
from vgrout.files import save_json
from vgrout.paths import REPO, repo_path

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
DRIVER_PARAMS = ("figures_dir",)
"""Parameters the driver sets itself; a params yaml that sets one is refused."""
KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A notebook raised while papermill executed it."""


def discover(folder: str | Path) -> list[Path]:
    """``NN_*.ipynb`` in `folder`, in numeric order; two with the same NN is an error."""
    found = sorted(repo_path(folder).glob(NOTEBOOK_GLOB))
    numbers = [p.name[:2] for p in found]
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    if dup:
        raise ValueError(
            f"{folder}: two notebooks share the number(s) {dup}; order would be ambiguous"
        )
    return found


def parameters_source(path: str | Path) -> str:
    """The source of the one cell tagged ``parameters`` (raises if there are 0 or 2+)."""
    nb = json.loads(Path(path).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(
            f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}"
        )
    src = cells[0]["source"]
    return "".join(src) if isinstance(src, list) else src


def parameter_defaults(path: str | Path) -> dict:
    """{name: default} from the parameters cell, which may hold only `name = literal` lines.

    Why literals only: the manifest records every effective parameter, and a
    default computed from code could not be read without running the notebook.
    """
    tree = ast.parse(parameters_source(path))
    out = {}
    for node in tree.body:
        target = (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        )
        if not isinstance(target, ast.Name):
            raise ValueError(
                f"{path}: parameters cell line {node.lineno}: expected `name = literal`"
            )
        try:
            out[target.id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(
                f"{path}: parameters cell line {node.lineno}: default of "
                f"{target.id!r} is not a Python literal"
            ) from None
    return out


def params_path(notebook: Path, params_dir: str | Path) -> Path:
    return repo_path(params_dir) / f"{notebook.stem}.yaml"


def load_params(notebook: Path, params_dir: str | Path) -> dict:
    """The full-run parameters of `notebook`; every key must be one of its parameters."""
    import yaml

    path = params_path(notebook, params_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; every notebook needs its full-run parameters "
            f"(use --quick to run on the notebooks' own defaults)"
        )
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    known = parameter_defaults(notebook)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"{path}: unknown parameter(s) {unknown}; {notebook.name} has {sorted(known)}"
        )
    owned = sorted(set(params) & set(DRIVER_PARAMS))
    if owned:
        raise ValueError(
            f"{path}: {owned} is set by vgrout.figures.runner, remove it from the yaml"
        )
    return params


def git_revision(repo: Path = REPO) -> dict:
    """{"commit": sha, "dirty": bool, "dirty_files": [...]} of the repository (None without git).

    dirty_files lists the tracked files that differ from the commit, so a
    manifest written from an edited tree says which edits its figures include.
    """

    def git(*args):
        r = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    commit = commit.strip() if commit else None
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is None:
        return {"commit": commit, "dirty": None, "dirty_files": None}
    files = sorted(line[3:] for line in status.splitlines() if line.strip())  # "XY path"
    return {"commit": commit, "dirty": bool(files), "dirty_files": files}


def organism_record() -> dict | None:
    """The shipped organism's recipe key and weights hash: which model the figures start from.

    None when data/organism is absent (the notebooks may have been pointed at
    another model through their parameters, which the manifest records too).
    """
    from vgrout.lm.shipped import read_record

    try:
        record = read_record()
    except FileNotFoundError:
        return None
    return {"key": record.get("key"), "weights_sha256": record.get("weights_sha256")}


def execute(notebook: Path, output: Path, parameters: dict, kernel: str = KERNEL) -> float:
    """Run one notebook with papermill from the repository root; returns wall seconds."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(REPO),
            progress_bar=False,
        )
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(
            f"{notebook.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
            f"(executed copy: {output})"
        ) from e
    except Exception as e:  # kernel died, notebook unreadable...: still name the notebook
        raise NotebookFailed(f"{notebook.name} failed: {type(e).__name__}: {e}") from e
    return time.perf_counter() - t0


def run_all(
    notebooks_dir: str | Path = "notebooks",
    params_dir: str | Path = "notebooks/params",
    figures_dir: str | Path | None = None,
    executed_dir: str | Path | None = None,
    quick: bool = False,
    only: Sequence[str] = (),
    kernel: str = KERNEL,
) -> dict:
    """Execute the notebooks in order and write ``<figures_dir>/manifest.json``.

    only: notebook numbers or stems to run (default all). Returns the manifest;
    raises NotebookFailed (after writing the manifest) when a notebook fails.
    """
    figures_dir = repo_path(figures_dir or ("out/quick/figures" if quick else "figures"))
    executed_dir = repo_path(executed_dir or ("out/quick/notebooks" if quick else "out/notebooks"))
    notebooks = [
        p for p in discover(notebooks_dir) if not only or p.name[:2] in only or p.stem in only
    ]
    if not notebooks:
        raise ValueError(
            f"{notebooks_dir}: no notebook matches {NOTEBOOK_GLOB} and only={list(only)}"
        )
    # Check every yaml before running anything: a typo should not cost a 10-minute run.
    injected = {p: ({} if quick else load_params(p, params_dir)) for p in notebooks}
    manifest = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "organism": organism_record(),
        "mode": "quick" if quick else "full",
        "python": sys.version.split()[0],
        "figures_dir": str(figures_dir),
        "notebooks": [],
        "status": "running",
    }
    if only:  # a partial re-run keeps the entries of the notebooks it does not run
        manifest["kept"] = previous_entries(
            figures_dir / "manifest.json", {nb.name for nb in notebooks}
        )
    t_all = time.perf_counter()
    for nb in notebooks:
        params = {**injected[nb], "figures_dir": str(figures_dir)}
        entry = {
            "notebook": nb.name,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "injected": params,
            "parameters": {**parameter_defaults(nb), **params},
            "executed": str(executed_dir / nb.name),
        }
        manifest["notebooks"].append(entry)
        print(f"[figures] {nb.name} ...", flush=True)
        try:
            entry["wall_s"] = round(execute(nb, executed_dir / nb.name, params, kernel), 1)
        except NotebookFailed as e:
            entry["error"] = str(e)
            manifest.update(
                status=f"failed: {nb.name}", total_wall_s=round(time.perf_counter() - t_all, 1)
            )
            save_json(manifest, figures_dir / "manifest.json")
            raise
        print(f"[figures] {nb.name} done in {entry['wall_s']} s", flush=True)
    manifest.update(status="ok", total_wall_s=round(time.perf_counter() - t_all, 1))
    save_json(manifest, figures_dir / "manifest.json")
    return manifest


def previous_entries(path: Path, rerun: set[str]) -> list[dict]:
    """Entries of an earlier manifest for notebooks not being re-run (with its git revision)."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    return [
        {**e, "git": old.get("git"), "date": old.get("date")}
        for e in old.get("notebooks", []) + old.get("kept", [])
        if e["notebook"] not in rerun
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m vgrout.figures", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="run on the notebooks' quick defaults (outputs under out/quick/)",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="NN",
        help="notebook numbers or stems to run, e.g. 00 02",
    )
    ap.add_argument("--notebooks", default="notebooks")
    ap.add_argument("--params", default="notebooks/params")
    ap.add_argument("--figures-dir", default=None)
    ap.add_argument("--executed-dir", default=None)
    ap.add_argument("--kernel", default=KERNEL)
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    try:
        m = run_all(a.notebooks, a.params, a.figures_dir, a.executed_dir, a.quick, a.only, a.kernel)
    except NotebookFailed as e:
        print(f"[figures] FAILED: {e}", file=sys.stderr)
        return 1
    print(
        f"[figures] {len(m['notebooks'])} notebooks in {m['total_wall_s']} s; "
        f"manifest: {Path(m['figures_dir']) / 'manifest.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m vgrout.figures"))
