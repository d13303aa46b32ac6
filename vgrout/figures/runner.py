"""``python -m vgrout.figures``: re-execute the numbered notebooks, write the manifests.

Runs ``notebooks/NN_*.ipynb`` in order with papermill. Full mode (the
default, `make figures`) re-executes every figure set of
`vgrout.figures.sets` (primary, secondary, replication), each notebook with
the parameters in its set's ``NN_*.yaml``. Those parameters point notebooks
03 and 04 at the committed results under ``results/``, so full mode replots
every grid and trains none (`python -m vgrout.figures.retrain <set>` trains a
grid again). ``--quick`` passes no parameters, so each notebook runs on the
quick defaults of its ``parameters`` cell (the ones nbval uses); ``--params``
runs one pass with another folder of yaml files. The driver itself injects
``figures_dir``, so a yaml must not set it.

Outputs: executed copies under ``out/notebooks/<set>/`` (``out/quick/notebooks/``
with ``--quick``), figures and their csv files in each set's folder
(``out/quick/figures/`` with ``--quick``, so a quick run never overwrites the
committed full-configuration figures), and ``<figures_dir>/manifest.json``:
the effective parameters of every notebook, the git revision, the organism,
the machine, the date and each notebook's wall time. A failed notebook stops
the run: the error names the notebook, the failing cell and papermill's
message, and the manifest records the failure. SIGTERM or SIGHUP stop it as
Ctrl-C does, shutting the notebook's kernel down.

Notebooks are found by glob, so a new ``NN_*.ipynb`` joins the run as soon as
it and its params yaml exist.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from vgrout import cli
from vgrout.files import save_json
from vgrout.machine import git_revision
from vgrout.paths import REPO, repo_path
from vgrout.procs import stop_on_signals

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
        single = isinstance(node, ast.Assign) and len(node.targets) == 1
        target = node.targets[0] if single and isinstance(node, ast.Assign) else None
        if not isinstance(node, ast.Assign) or not isinstance(target, ast.Name):
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


def organism_record(model: str = "organism") -> dict | None:
    """Which model a grid or figure set starts from: for a named organism recipe
    (`organism` is v1, `organism_v2`, ...) its name, recipe key and weights hash.

    A Hugging Face id or folder gets its name alone. None when the named
    organism's folder is absent (the notebooks may have been pointed at another
    model through their parameters, which the manifest records too).
    """
    from vgrout.lm.organism import RECIPES
    from vgrout.lm.shipped import read_record, shipped_dir

    if model not in RECIPES:
        return {"name": model}
    try:
        record = read_record(shipped_dir(model))
    except FileNotFoundError:
        return None
    return {"name": model, "key": record.get("key"), "weights_sha256": record.get("weights_sha256")}


def check_organism(stored: dict | None, model: str, where: str) -> None:
    """Raise when a committed grid was trained on another organism than its set names.

    Guards the studies on each organism from one another: a grid of the v2
    organism stored under a v1 set (or the reverse) would otherwise be replotted
    as if it were that set's, replacing its figures. Compares recipe keys, which
    name the recipe and its data (a rebuild of the same recipe on another
    machine keeps its key).
    """
    expected = organism_record(model)
    if not stored or not expected or "key" not in expected:
        return
    if stored.get("key") != expected["key"]:
        raise ValueError(
            f"{where}: trained on organism {stored.get('name', '?')} (recipe key "
            f"{stored.get('key')}), but its parameters name {model!r} (key {expected['key']}); "
            "store a grid of another organism under a figure set of its own"
        )


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
    SIGTERM and SIGHUP stop the run as Ctrl-C does, so the notebook's kernel,
    and whatever it started, is shut down rather than left running.
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
    models = [v["model"] for v in injected.values() if isinstance(v.get("model"), str)]
    manifest = new_manifest(figures_dir, quick, models[0] if models else "organism")
    if only:  # a partial re-run keeps the entries of the notebooks it does not run
        manifest["kept"] = previous_entries(
            figures_dir / "manifest.json", {nb.name for nb in notebooks}
        )
    t_all = time.perf_counter()
    with stop_on_signals():
        for nb in notebooks:
            params = {**injected[nb], "figures_dir": str(figures_dir)}
            entry: dict[str, Any] = {
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
                _close(manifest, f"failed: {nb.name}", t_all)
                raise
            except KeyboardInterrupt:
                _close(manifest, f"stopped: {nb.name}", t_all)
                raise
            print(f"[figures] {nb.name} done in {entry['wall_s']} s", flush=True)
    _close(manifest, "ok", t_all)
    return manifest


def _close(manifest: dict, status: str, t_all: float) -> None:
    manifest.update(status=status, total_wall_s=round(time.perf_counter() - t_all, 1))
    save_json(manifest, Path(manifest["figures_dir"]) / "manifest.json")


def new_manifest(figures_dir: Path, quick: bool, model: str = "organism") -> dict[str, Any]:
    """What every manifest records before a notebook runs: revision, organism, machine."""
    from vgrout.machine import machine_record

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "organism": organism_record(model),
        "machine": machine_record(),
        "mode": "quick" if quick else "full",
        "python": sys.version.split()[0],
        "figures_dir": str(figures_dir),
        "notebooks": [],
        "status": "running",
    }


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


def run_sets(names: Sequence[str], kernel: str = KERNEL) -> list[dict]:
    """Execute each figure set (`vgrout.figures.sets`) in full mode; their manifests."""
    from vgrout.figures.results import read_meta
    from vgrout.figures.sets import get_set, results_folder, set_model

    sets = [get_set(n) for n in names]
    print(reference_notice(), flush=True)
    out = []
    for fs in sets:
        why = not_ready(fs)
        if why:
            print(f"[figures] set {fs.name}: {why}; `python -m vgrout.figures.retrain "
                  f"{fs.name}` trains it", flush=True)  # fmt: skip
            continue
        results = results_folder(fs)
        if results:  # a grid of another organism must not replace this set's figures
            check_organism(read_meta(results).get("organism"), set_model(fs), results)
        print(f"[figures] set {fs.name}: {fs.what} -> {fs.figures}/", flush=True)
        out.append(
            run_all(params_dir=fs.params, figures_dir=fs.figures,
                    executed_dir=f"out/notebooks/{fs.name}", only=fs.only, kernel=kernel)
        )  # fmt: skip
    return out


def not_ready(fs) -> str:
    """Why a set cannot be replotted yet ('' when it can): its grid has not run, or has
    only partly (the analysis of a preregistered grid waits for every planned seed)."""
    from vgrout.figures.results import read_meta
    from vgrout.figures.sets import results_folder

    results = results_folder(fs)
    if not results:
        return ""
    if not (repo_path(results) / "grid.json").is_file():
        return f"{results} not committed yet (the grid has not run)"
    meta = read_meta(results)
    if meta.get("partial"):
        return f"{results} is partial ({len(meta['seeds'])} of {len(meta['seeds_planned'])} seeds)"
    return ""


def reference_notice() -> str:
    """Whether the external reference data (notebook 02's real-hack panel) is here."""
    from vgrout.env.reference import FETCH_COMMAND
    from vgrout.paths import reference_dir

    found = reference_dir()
    if found is not None:
        return f"[figures] reference data: {found}"
    return (
        "[figures] reference data absent: notebook 02 keeps the committed routing figures "
        f"(they need the real-hack panel); `{FETCH_COMMAND}` brings the data"
    )


def main(argv: Sequence[str] | None = None) -> int:
    from vgrout.figures.sets import SETS

    ap = argparse.ArgumentParser(
        prog="python -m vgrout.figures", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--set", nargs="+", default=list(SETS), choices=list(SETS),
                    help="figure sets to re-execute in full mode (default: all, in order)")  # fmt: skip
    ap.add_argument("--quick", action="store_true",
                    help="one pass on the notebooks' quick defaults (outputs under out/quick/)")  # fmt: skip
    ap.add_argument("--only", nargs="+", default=(), metavar="NN",
                    help="with --params: notebook numbers or stems to run, e.g. 00 02")  # fmt: skip
    ap.add_argument("--params", default=None,
                    help="one pass with the yaml files of this folder (instead of the sets)")  # fmt: skip
    ap.add_argument("--figures-dir", default=None)
    ap.add_argument("--executed-dir", default=None)
    ap.add_argument("--kernel", default=KERNEL)
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    try:
        if a.quick or a.params or a.only or a.figures_dir:
            params = a.params or "notebooks/params"
            runs = [run_all("notebooks", params, a.figures_dir, a.executed_dir, a.quick, a.only,
                            a.kernel)]  # fmt: skip
        else:
            runs = run_sets(a.set, a.kernel)
    except NotebookFailed as e:
        print(f"[figures] FAILED: {e}", file=sys.stderr)
        return 1
    for m in runs:
        print(
            f"[figures] {len(m['notebooks'])} notebooks in {m['total_wall_s']} s; "
            f"manifest: {Path(m['figures_dir']) / 'manifest.json'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m vgrout.figures"))
