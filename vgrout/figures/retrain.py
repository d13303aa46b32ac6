"""``python -m vgrout.figures.retrain <set>``: train a committed grid again and compare.

`make figures` replots the committed grids without training; this command is
the other path. It trains the grid of a figure set (`vgrout.figures.sets`)
from its 03 yaml, resumably and into its own folder (``out/retrain/<set>/``,
never over ``results/``), stores the new runs' records there in the results
format, and ends with an agreement table:

- per arm, the new mean shipped hack and solve rate on the training problems
  against the committed mean and its 95% t interval over seeds;
- per comparison of the set's 04 yaml, the committed and the new effect and
  verdict, and whether the verdict is the same.

Trajectories depend on the CPU's float rounding (`vgrout.machine`), so on
other hardware a retrained grid is a replication with the spread its seeds
measure, not a repeat; the table says whether the conclusions still hold.
``--replace`` writes the new records over ``results/<set>`` (then `make
figures` draws them); without it the committed results are never touched.
Ctrl-C, SIGTERM or SIGHUP stop every run; running the command again resumes.

A grid that outlasts a session is committed as it lands: ``--store-finished
--replace`` stores the seeds finished in every arm as a partial grid (and
extends one already stored), and ``--continue`` trains only the seeds that it
does not hold, so a later session resumes from the committed records even when
the run folders are gone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from vgrout import cli
from vgrout.figures import ablation, stats
from vgrout.figures.grid import Grid
from vgrout.figures.results import open_results, save_results
from vgrout.figures.sets import SETS, FigureSet, get_set
from vgrout.paths import repo_path

TRAIN_NB, ANALYSIS_NB = "03_grpo_training", "04_ablation_figures"


def set_params(fs: FigureSet) -> tuple[dict, dict]:
    """(03 parameters, 04 parameters) of a set: its yaml files over the notebooks' defaults."""
    from vgrout.figures.runner import load_params, parameter_defaults

    out = []
    for stem in (TRAIN_NB, ANALYSIS_NB):
        nb = repo_path("notebooks") / f"{stem}.ipynb"
        out.append({**parameter_defaults(nb), **load_params(nb, fs.params)})
    return out[0], out[1]


def base_config(train: Mapping):
    """The GRPOConfig every arm of a set's grid starts from (its 03 parameters `train`)."""
    from vgrout.grpo.presets import preset

    return preset(train["preset"], model=train["model"], steps=train["steps"],
                  device=train["device"], **train["overrides"])  # fmt: skip


def retrain(
    fs: FigureSet,
    runs_dir: str | Path,
    out: str | Path,
    jobs: int | None = None,
    skip: Sequence[int] = (),
) -> Grid:
    """Train (or resume) the set's grid under `runs_dir`; store its records in `out`.

    skip: planned seeds not to train (those a partial grid already stored, see
    `stored_part`).
    """
    from vgrout.figures.runner import organism_record
    from vgrout.grpo.sweep import run_grid
    from vgrout.machine import git_revision, machine_record

    train, _ = set_params(fs)
    base = base_config(train)
    runs_dir = repo_path(runs_dir)
    before = {p.parent.parent.name + "/" + p.parent.name for p in runs_dir.glob("*/s*/result.json")}
    t0 = time.perf_counter()
    skipped = set(skip)
    seeds = [s for s in train["seeds"] if s not in skipped]
    runs = run_grid(base, train["arms"], seeds, runs_dir, jobs=jobs or train["jobs"])
    wall = time.perf_counter() - t0
    grid = Grid.from_run_dirs(runs)
    meta = {
        "name": fs.name,
        "revision": git_revision()["commit"],
        "organism": organism_record(train["model"]),
        "machine": machine_record(),
        "wall_s": round(wall, 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_before": sorted(before),
        "note": f"retrained by python -m vgrout.figures.retrain {fs.name}",
    }
    save_results(grid, out, meta)
    print(f"[retrain] {len(runs)} runs in {wall:.0f} s ({len(before)} had finished before)")
    return grid


def store_finished(
    fs: FigureSet, runs_dir: str | Path, dest: str | Path, wall_s: float | None = None
) -> Grid | None:
    """Store, as one more part, the seeds finished in every arm that `dest` does not hold.

    For a grid that outlasts a session: its records are committed as they land,
    while `make figures` leaves a partial grid alone, so no preregistered test is
    read before every planned seed is in. The records already at `dest` are
    kept (`stored_part`), so the run folders of an earlier session need not
    survive, and a seed already stored is not stored again: its part keeps the
    revision and machine it was stored with. Where its run folders are still
    here they must hold the stored runs (`check_unchanged`). Once every planned
    seed is in, the grid is no longer partial. A part records the revision of
    the checkout and machine that stored it (`revision`, `machine`) and what
    trained its runs (`run_provenance`). wall_s: the part's training time, when known
    (`continue_grid` knows it). Returns the stored grid (None if nothing is).
    """
    from vgrout.figures.grid import discover_runs
    from vgrout.figures.runner import organism_record
    from vgrout.machine import git_revision, machine_record

    train, _ = set_params(fs)
    root = repo_path(runs_dir)
    arms, planned = list(train["arms"]), list(train["seeds"])
    done = [s for s in planned if all((root / a / f"s{s}" / "result.json").is_file() for a in arms)]
    earlier = stored_part(fs, dest)
    kept = dict(earlier.records) if earlier else {}
    held = {s for _, s in kept}
    stored_again = [s for s in done if s in held]
    if stored_again:  # (discover_runs reads every seed when given none)
        check_unchanged(kept, Grid.from_run_dirs(discover_runs(root, arms, stored_again)).records,
                        str(dest))  # fmt: skip
    fresh = [s for s in done if s not in held]
    if not fresh:
        print(f"[retrain] {fs.name}: no finished seed under {root} that {dest} lacks")
        return earlier
    new = Grid.from_run_dirs(discover_runs(root, arms, fresh)).records
    check_same_configs(kept, new, str(dest))
    seeds = sorted(held | set(fresh))
    merged = {**kept, **new}
    grid = Grid(records={(a, s): merged[(a, s)] for a in arms for s in seeds})
    part = {"seeds": fresh, "revision": git_revision()["commit"],
            **run_provenance(root, arms, fresh), "machine": machine_record(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **({"wall_s": round(wall_s, 1)} if wall_s is not None else {})}  # fmt: skip
    parts = earlier_parts(earlier) + [part]
    missing = [s for s in planned if s not in seeds]
    meta = {
        "name": fs.name, "organism": organism_record(train["model"]),
        **{k: v for k, v in part.items() if k != "seeds"},  # the grid's seeds: save_results
        "partial": bool(missing), "seeds_planned": planned, "parts": parts,
        "note": f"partial: {len(seeds)} of {len(planned)} planned seeds finished in every arm; "
        "the analysis waits for all of them" if missing else
        f"stored in {len(parts)} part(s) as they finished (see parts)",
    }  # fmt: skip
    save_results(grid, dest, meta)
    print(
        f"[retrain] {fs.name}: stored seeds {fresh}, now {len(seeds)} of {len(planned)}, in {dest}"
    )
    return grid


def run_provenance(root: Path, arms: Sequence[str], seeds: Sequence[int]) -> dict:
    """What trained these runs, from the rows their starts and resumes wrote to
    machine.jsonl: `run_revisions` (sorted; None for a run made before runs
    recorded theirs) and `run_machines` (each distinct machine record once)."""
    from vgrout.grpo.rundir import read_jsonl

    revisions, machines = set(), {}
    for a in arms:
        for s in seeds:
            for row in read_jsonl(root / a / f"s{s}" / "machine.jsonl"):
                revisions.add(row.get("revision"))
                machine = {k: v for k, v in row.items() if k not in ("step", "revision", "dirty")}
                machines[json.dumps(machine, sort_keys=True)] = machine
    return {
        "run_revisions": sorted(revisions, key=lambda r: (r is None, r or "")),
        "run_machines": [machines[k] for k in sorted(machines)],
    }


def check_unchanged(stored: Mapping, found: Mapping, where: str) -> None:
    """Raise when a run folder holds another run than the record stored for its seed.

    A seed is stored once; a folder that was trained again (another machine,
    a changed tree) would otherwise be silently ignored, or silently mixed in.
    """
    for key, rec in found.items():
        old = stored[key]
        if untimed(rec.steps) != untimed(old.steps) or rec.evals != old.evals:
            raise ValueError(
                f"{where}: arm {key[0]!r} seed {key[1]} is stored, and its run folder holds "
                "another run (steps or evaluations differ); move the folder or the stored "
                "seed aside before storing"
            )


def untimed(rows: Sequence[dict]) -> list[dict]:
    """Step rows without their wall times (which differ between repeats of one run)."""
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


def stored_part(fs: FigureSet, dest: str | Path) -> Grid | None:
    """The run records of this set stored at `dest` (a partial grid, or a whole one
    stored part by part), or None when there are none.

    Raises when they were trained on another organism than the set names: seeds
    of two organisms in one grid would be analysed as one study.
    """
    from vgrout.figures.runner import check_organism

    dest = repo_path(dest)
    if not (dest / "grid.json").is_file():
        return None
    grid = open_results(dest)
    if not grid.records:
        return None
    train, _ = set_params(fs)
    check_organism(grid.meta.get("organism"), train["model"], str(dest))
    return grid


def earlier_parts(grid: Grid | None) -> list[dict]:
    """The parts a stored grid was stored in (one, for a grid stored before parts were kept)."""
    if grid is None:
        return []
    return grid.meta.get("parts") or [
        {k: grid.meta.get(k) for k in ("seeds", "revision", "machine", "date")}
    ]


RUN_FIELDS = ("seed", "run_dir", "resume")
"""Config fields that differ between the runs of one arm by design."""


def check_same_configs(kept: Mapping, new: Mapping, where: str) -> None:
    """Raise when an arm's new runs were configured otherwise than its stored ones.

    Guards a grid continued across sessions against a changed yaml or preset:
    its seeds would no longer be paired. Fields only one side has are fields
    added to GRPOConfig in between, whose defaults keep the earlier behaviour.
    """
    first_new = {arm: r.config for (arm, _), r in new.items()}
    for (arm, seed), rec in kept.items():
        if arm not in first_new:
            continue
        old_c, new_c = rec.config, first_new[arm]
        diff = sorted(k for k in set(old_c) & set(new_c)
                      if k not in RUN_FIELDS and old_c[k] != new_c[k])  # fmt: skip
        if diff:
            raise ValueError(
                f"{where}: arm {arm!r} seed {seed} was stored with another config than its "
                f"new runs ({', '.join(f'{k}: {old_c[k]!r} -> {new_c[k]!r}' for k in diff)}); "
                "a grid continued across sessions must keep its configuration"
            )


def arm_agreement(new: pd.DataFrame, old: pd.DataFrame, split: str = "iid") -> pd.DataFrame:
    """Per arm and metric: the new mean shipped rate against the committed mean and 95% CI."""
    a, b = ablation.shipped(new, split), ablation.shipped(old, split)
    rows = []
    for arm in dict.fromkeys(a.index.get_level_values("arm")):
        for m in ("hack", "solve"):
            old_v = b.loc[arm, m] if arm in b.index.get_level_values("arm") else pd.Series([])
            mean, lo, hi = stats.paired_ci(old_v) if len(old_v) > 1 else (float("nan"),) * 3
            new_mean = float(a.loc[arm, m].mean())
            rows.append({"arm": arm, "metric": m, "new": new_mean, "committed": mean,
                         "committed_ci_low": lo, "committed_ci_high": hi,
                         "new_seeds": len(a.loc[arm]), "committed_seeds": len(old_v),
                         "within_ci": bool(lo <= new_mean <= hi)})  # fmt: skip
    return pd.DataFrame(rows)


def verdict_agreement(new: pd.DataFrame, old: pd.DataFrame, comparisons: Sequence[Mapping]):
    """Per comparison: committed and new effect and verdict, and whether the verdict holds."""
    t_new, t_old = ablation.test_table(new, comparisons), ablation.test_table(old, comparisons)
    both = t_old.merge(t_new, on=["id", "a", "b", "metric", "sided"], suffixes=("_committed", ""))
    both["same_verdict"] = both["verdict_committed"] == both["verdict"]
    cols = ["id", "a", "b", "metric", "sided", "effect_committed", "effect", "ci_low", "ci_high",
            "p", "verdict_committed", "verdict", "same_verdict"]  # fmt: skip
    return both[cols]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgrout.figures.retrain",
                                 description=__doc__.split("\n")[0])  # fmt: skip
    ap.add_argument("set", choices=list(SETS), help="the figure set whose grid to train")
    ap.add_argument("--runs-dir", default=None, help="run folders (default out/retrain/<set>/runs)")
    ap.add_argument("--out", default=None, help="records and tables (default out/retrain/<set>)")
    ap.add_argument(
        "--jobs", type=int, default=None, help="runs side by side (default: the yaml's)"
    )
    ap.add_argument("--replace", action="store_true",
                    help="also write the new records over results/<set> (the committed results)")  # fmt: skip
    ap.add_argument("--store-finished", action="store_true",
                    help="train nothing: store the seeds finished in every arm so far, marked "
                    "partial (in results/<set> with --replace)")  # fmt: skip
    ap.add_argument("--continue", dest="cont", action="store_true",
                    help="train only the planned seeds that the partial grid in results/<set> "
                    "does not hold yet; with --replace, store the whole grid there when done")  # fmt: skip
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    fs = get_set(a.set)
    out = repo_path(a.out or f"out/retrain/{fs.name}")
    _, analysis = set_params(fs)
    committed = repo_path(analysis["results"] or f"results/{fs.name}")
    if a.store_finished:
        store_finished(fs, a.runs_dir or out / "runs", committed if a.replace else out / "results")
        return 0
    if a.cont:
        return continue_grid(fs, committed, a.runs_dir or out / "runs", out, a.jobs, a.replace)
    grid = retrain(fs, a.runs_dir or out / "runs", out / "results", a.jobs)
    if committed.is_dir() and open_results(committed).meta.get("partial"):
        print(f"[retrain] {committed} holds a partial grid: nothing to compare with")
    elif committed.is_dir():
        report(ablation.grid_seeds(grid), ablation.grid_seeds(open_results(committed)),
               analysis["comparisons"], out)  # fmt: skip
    else:
        print(f"[retrain] no committed results at {committed}: nothing to compare with")
    if a.replace:
        save_results(grid, committed, open_results(out / "results").meta)
        print(f"[retrain] wrote the new records over {committed}; `make figures` draws them")
    return 0


def continue_grid(fs: FigureSet, committed: Path, runs_dir, out: Path, jobs, replace: bool) -> int:
    """--continue: train the planned seeds that the records at `committed` lack, then
    (with `replace`) store them there beside the earlier ones."""
    part = stored_part(fs, committed)
    skip = part.seeds if part else []
    planned = set_params(fs)[0]["seeds"]
    if set(planned) <= set(skip):
        print(f"[retrain] {committed} holds every planned seed: nothing to train")
        return 0
    print(f"[retrain] {committed} holds seeds {skip}: training the others")
    retrain(fs, runs_dir, out / "results", jobs, skip)
    if replace:
        store_finished(fs, runs_dir, committed, open_results(out / "results").meta["wall_s"])
    return 0


def report(new: pd.DataFrame, old: pd.DataFrame, comparisons, out: Path) -> None:
    arms, tests = arm_agreement(new, old), verdict_agreement(new, old, comparisons)
    arms.to_csv(out / "agreement_arms.csv", index=False)
    tests.to_csv(out / "agreement_tests.csv", index=False)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(arms.round(3).to_string(index=False))
        print(tests.round(4).to_string(index=False))
    held = int(tests["same_verdict"].sum())
    print(f"[retrain] {held} of {len(tests)} verdicts the same; "
          f"{int(arms['within_ci'].sum())} of {len(arms)} arm means within the committed 95% CI; "
          f"tables in {out}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m vgrout.figures.retrain"))
