"""Committed results: one folder per grid under ``results/``, read back as a `Grid`.

Layout of ``results/<grid>/``:

  grid.json       what the grid is and where it came from: its arms and seeds,
                  the code revision, the organism's recipe key and weights hash,
                  the machine (CPU, torch's kernels, threads) and the wall time
  runs.jsonl.gz   "run records": one run a line (arm, seed, config, steps, evals),
                  gzip without a timestamp, so the same runs give the same bytes
  tables/*.csv    "figure tables": for a grid whose run folders were gone before
                  records were kept, the tables its figures were drawn from

A folder is written whole (`atomic_dir`) and never half; reading refuses a
malformed line or a missing field by file, line and field, because a figure
quietly drawn from a truncated archive would misreport its grid.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd

from vgrout.figures.grid import Grid, RunRecord
from vgrout.files import atomic_dir
from vgrout.paths import repo_path

FORMAT = 1
KINDS = ("run records", "figure tables")
RECORD_FIELDS = ("arm", "seed", "config", "steps", "evals")
META_FIELDS = ("name", "format", "kind", "arms", "seeds", "revision", "organism", "machine")
"""Fields every grid.json has; wall_s, date, params and note are optional."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A stored csv, floats read back exactly (so writing it again gives the same bytes)."""
    major = int(pd.__version__.split(".")[0])
    kwargs = {} if major >= 3 else {"float_precision": "round_trip"}  # pandas 3: the default
    return pd.read_csv(path, **kwargs)


def save_results(grid: Grid, folder: str | Path, meta: dict) -> Path:
    """Write `grid` (its records, or its stored tables when it has none) and grid.json.

    meta: at least revision, organism and machine (see META_FIELDS); name,
    format, kind, arms and seeds are filled in here.
    """
    folder = repo_path(folder)
    kind = KINDS[0] if grid.records else KINDS[1]
    full = {
        **meta,
        "name": meta.get("name", folder.name),
        "format": FORMAT,
        "kind": kind,
        "arms": grid.arms,
        "seeds": grid.seeds,
    }
    missing = [f for f in META_FIELDS if f not in full]
    if missing:
        raise ValueError(f"save_results: meta lacks {missing}")

    def fill(tmp: Path) -> None:
        (tmp / "grid.json").write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
        if grid.records:
            lines = "".join(json.dumps(r.to_json()) + "\n" for r in grid.records.values())
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
                gz.write(lines.encode())
            (tmp / "runs.jsonl.gz").write_bytes(buf.getvalue())
        else:
            (tmp / "tables").mkdir()
            for name, df in grid.stored.items():
                df.to_csv(tmp / "tables" / f"{name}.csv", index=False)

    return atomic_dir(folder, fill)


def read_meta(folder: str | Path) -> dict:
    path = repo_path(folder) / "grid.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; a results folder holds grid.json (see vgrout.figures.results)"
        )
    meta = json.loads(path.read_text())
    missing = [f for f in META_FIELDS if f not in meta]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}")
    if meta["format"] != FORMAT or meta["kind"] not in KINDS:
        raise ValueError(
            f"{path}: format {meta['format']!r} / kind {meta['kind']!r}; this code reads "
            f"format {FORMAT}, kinds {KINDS}"
        )
    return meta


def open_results(folder: str | Path) -> Grid:
    """The grid stored in `folder` (see the module docstring for the layout)."""
    folder = repo_path(folder)
    meta = read_meta(folder)
    if meta["kind"] == "figure tables":
        tables = sorted((folder / "tables").glob("*.csv"))
        if not tables:
            raise FileNotFoundError(
                f"{folder / 'tables'}: no csv tables for a 'figure tables' grid"
            )
        return Grid(stored={p.stem: read_table(p) for p in tables}, meta=meta)
    grid = Grid(records=read_records(folder / "runs.jsonl.gz"), meta=meta)
    listed = {(a, int(s)) for a in meta["arms"] for s in meta["seeds"]}
    if set(grid.records) != listed:
        raise ValueError(
            f"{folder}: runs.jsonl.gz holds {sorted(grid.records)}, grid.json lists "
            f"arms {meta['arms']} x seeds {meta['seeds']}"
        )
    return grid


def read_records(path: Path) -> dict[tuple[str, int], RunRecord]:
    """Run records from a runs.jsonl.gz; a bad line raises naming the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a 'run records' grid keeps its runs there")
    out: dict[tuple[str, int], RunRecord] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON: {e.msg}") from None
            missing = [f for f in RECORD_FIELDS if f not in row] if isinstance(row, dict) else []
            if not isinstance(row, dict) or missing:
                raise ValueError(f"{where}: expected a run record with fields {RECORD_FIELDS}")
            key = (row["arm"], int(row["seed"]))
            if key in out:
                raise ValueError(f"{where}: run {key} appears twice")
            out[key] = RunRecord(key[0], key[1], row["config"], row["steps"], row["evals"])
    return out
