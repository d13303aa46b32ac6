"""One grid of GRPO runs (arms x seeds) as notebooks 03 and 04 read it.

A `Grid` holds each run's records (config, per-step log, evaluations), read
either from run folders (`from_run_dirs`, what `run_grid` writes) or from a
committed results folder (`vgrout.figures.results`). The figures are computed
from those records, so replotting a committed grid repeats exactly what
training it drew.

A grid whose run folders were lost before its records could be stored keeps
instead the tables its figures were drawn from (`stored`): `table(name,
compute)` returns the stored table when there is one and computes it from the
records otherwise, so one notebook serves both kinds and never silently mixes
them (a table that is neither stored nor computable raises, naming both).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd

from vgrout.names import GATED_ARMS
from vgrout.paths import repo_path

RunKey = tuple[str, int]
"""(arm name, seed): the arm name is the grid's folder name, e.g. routeA_haar."""


@dataclass(frozen=True)
class RunRecord:
    """What a finished run leaves that its figures need (not checkpoints or rollouts)."""

    arm: str
    seed: int
    config: dict
    """The run's GRPOConfig as a dict (config.json)."""
    steps: list[dict]
    """steps.jsonl: one row per optimizer step."""
    evals: list[dict]
    """eval.jsonl: one row per (step, split, view) evaluation, with by_mode."""

    def to_json(self) -> dict:
        return {
            "arm": self.arm,
            "seed": self.seed,
            "config": self.config,
            "steps": self.steps,
            "evals": self.evals,
        }


@dataclass
class Grid:
    """Run records of one grid, or the tables it left (see the module docstring)."""

    records: dict[RunKey, RunRecord] = field(default_factory=dict)
    stored: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Figure tables kept in place of run records, by figure name (e.g. ablation_seeds)."""
    meta: dict = field(default_factory=dict)
    """Where the grid came from: revision, organism, machine, wall time (results folders)."""

    @classmethod
    def from_run_dirs(cls, runs: Mapping[RunKey, Path]) -> "Grid":
        """Records of finished run folders, e.g. `run_grid`'s or `discover_runs`'s answer."""
        from vgrout.grpo.rundir import load_run

        records = {}
        for (arm, seed), path in runs.items():
            run = load_run(path)
            records[(arm, int(seed))] = RunRecord(
                arm, int(seed), json.loads(run.config.to_json()), run.steps, run.evals
            )
        return cls(records=records)

    # -- what the grid holds -------------------------------------------------

    @property
    def arms(self) -> list[str]:
        """Arm names in the grid's order (records first, else the stored seeds table)."""
        if self.records:
            return list(dict.fromkeys(a for a, _ in self.records))
        return list(dict.fromkeys(self.stored_table("ablation_seeds")["arm"]))

    @property
    def seeds(self) -> list[int]:
        if self.records:
            return sorted({s for _, s in self.records})
        return sorted(int(s) for s in set(self.stored_table("ablation_seeds")["seed"]))

    def select(self, arms: Sequence[str] = (), seeds: Sequence[int] = ()) -> "Grid":
        """The grid restricted to (and ordered by) `arms` and `seeds`; an absent one raises."""
        have_arms, have_seeds = self.arms, self.seeds
        missing = [a for a in arms if a not in have_arms] + [
            f"seed {s}" for s in seeds if int(s) not in have_seeds
        ]
        if missing:
            raise KeyError(f"grid: {missing} not in it (arms {have_arms}, seeds {have_seeds})")
        if not self.records:
            if (arms and set(arms) != set(have_arms)) or (
                seeds and {int(s) for s in seeds} != set(have_seeds)
            ):
                raise ValueError(
                    "grid: a grid stored as figure tables cannot be subset; ask for all of "
                    f"it (arms {have_arms}, seeds {have_seeds})"
                )
            return self
        arms, seeds = list(arms) or have_arms, [int(s) for s in seeds] or have_seeds
        records = {(a, s): self.records[(a, s)] for a in arms for s in seeds}
        return Grid(records=records, stored=self.stored, meta=self.meta)

    def gated_arms(self) -> list[str]:
        """Arm names whose runs route by a score gate (routeA / routeV, placebo included)."""
        if not self.records:
            gate = self.stored.get("ablation_gate")
            return [] if gate is None else list(dict.fromkeys(gate["arm"]))
        return list(
            dict.fromkeys(a for (a, _), r in self.records.items() if r.config["arm"] in GATED_ARMS)
        )

    # -- tables ----------------------------------------------------------------

    def stored_table(self, name: str) -> pd.DataFrame:
        if name not in self.stored:
            raise KeyError(f"grid: no stored table {name!r} (stored: {sorted(self.stored)})")
        return self.stored[name]

    def table(self, name: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The stored table `name` if the grid keeps one, else compute() from the records."""
        if name in self.stored:
            return self.stored[name]
        if not self.records:
            raise KeyError(
                f"grid: table {name!r} is not stored (stored: {sorted(self.stored)}) and the "
                "grid has no run records to compute it from"
            )
        return compute()

    def steps(self) -> pd.DataFrame:
        """Every training step of every run: arm, seed and the steps.jsonl fields."""
        rows = [
            {"arm": a, "seed": s, **row}
            for (a, s), r in self._records("steps").items()
            for row in r.steps
            if "reward" in row
        ]
        return pd.DataFrame(rows)

    def evals(self) -> pd.DataFrame:
        """Every evaluation row (by_mode left out): arm, seed, step, split, view, ships, rates."""
        rows = [
            {"arm": a, "seed": s, **{k: v for k, v in e.items() if k != "by_mode"}}
            for (a, s), r in self._records("evals").items()
            for e in r.evals
        ]
        return pd.DataFrame(rows)

    def modes(self) -> pd.DataFrame:
        """Per grading mode, every evaluation row's rates."""
        keys = ("step", "split", "view", "ships")
        rows = [
            {"arm": a, "seed": s, **{k: e[k] for k in keys}, "mode": mode, **rates}
            for (a, s), r in self._records("modes").items()
            for e in r.evals
            for mode, rates in (e.get("by_mode") or {}).items()
        ]
        return pd.DataFrame(rows)

    def _records(self, what: str) -> dict[RunKey, RunRecord]:
        if not self.records:
            raise KeyError(f"grid: no run records to read {what} from (stored tables only)")
        return self.records


def discover_runs(
    runs_dir: str | Path, arms: Sequence[str] = (), seeds: Sequence[int] = ()
) -> dict[RunKey, Path]:
    """{(arm, seed): run folder} for ``<runs_dir>/<arm>/s<seed>``, finished runs only.

    arms, seeds: what to load (empty: everything found; vanilla first, then by
    name). Raises when the folder, an asked-for run, or a run's result.json is
    missing: a figure silently drawn from half the grid, or from a run that
    stopped early, would misreport the comparison it claims to show.
    """
    root = repo_path(runs_dir)
    hint = "run 03_grpo_training.ipynb first with the same runs_dir"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no runs folder; {hint}")
    found = {
        (d.parent.name, int(d.name[1:])): d
        for d in sorted(root.glob("*/s*"))
        if re.fullmatch(r"s\d+", d.name) and (d / "config.json").is_file()
    }
    if not found:
        raise FileNotFoundError(f"{root}: holds no <arm>/s<seed> run folders; {hint}")
    names = list(arms) or sorted({a for a, _ in found}, key=lambda a: (a != "vanilla", a))
    wanted = list(seeds) or sorted({s for _, s in found})
    runs = {}
    for arm in names:
        for seed in wanted:
            path = found.get((arm, int(seed)))
            if path is None:
                raise FileNotFoundError(
                    f"{root / arm / f's{seed}'}: run missing (found {sorted(found)}); {hint}"
                )
            if not (path / "result.json").is_file():
                raise RuntimeError(
                    f"{path}: run unfinished (no result.json); re-run 03, it resumes"
                )
            runs[(arm, int(seed))] = path
    return runs
