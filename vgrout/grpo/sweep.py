"""Run a grid of GRPO runs (arms x seeds), a few at a time, resumably.

Each run is its own process with one torch thread: two 2-thread jobs on two
cores run ~5x slower than two 1-thread jobs. Every run is started with
resume=True, so re-running a grid (a notebook re-executed, a crash, a kill)
finishes only what is missing and returns finished runs at once.

Stopping the grid stops its runs: the parent turns SIGTERM and SIGHUP into
KeyboardInterrupt (`vgrout.procs.stop_on_signals`) and terminates every run
it started before it re-raises; each run also dies with its parent
(`die_with_parent`), and a run's grader workers exit with it. A run that
fails stops the grid, naming the run and its exit code.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, cast

from tqdm.auto import tqdm

from vgrout.grpo.config import GRPOConfig
from vgrout.procs import die_with_parent, stop_on_signals

RunKey = tuple[str, int]


def _run(cfg_json: str) -> None:
    import os

    die_with_parent()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from vgrout.grpo.loop import train

    train(GRPOConfig.from_json(cfg_json))


def grid_configs(
    base: GRPOConfig, arms: dict[str, dict], seeds, root: str | Path
) -> dict[RunKey, GRPOConfig]:
    """{(arm name, seed): config} with run folders root/<name>/s<seed>."""
    out = {}
    for name, changes in arms.items():
        for seed in seeds:
            out[(name, seed)] = base.replace(
                **changes,
                seed=seed,
                resume=True,
                threads=1,
                run_dir=str(Path(root) / name / f"s{seed}"),
            ).validate()
    return out


def run_grid(
    base: GRPOConfig, arms: dict[str, dict], seeds, root: str | Path, jobs: int = 2
) -> dict[RunKey, Path]:
    """Train every (arm, seed) of the grid; returns their run folders."""
    cfgs = grid_configs(base, arms, seeds, root)
    # seed-major order: a grid stopped part-way holds whole seeds of every arm,
    # which is what paired comparisons over seeds can read
    order = sorted(cfgs, key=lambda k: (list(seeds).index(k[1]), list(arms).index(k[0])))
    order = [k for k in order if not _finished(cfgs[k])]
    with stop_on_signals():
        if jobs <= 1:
            from vgrout.grpo.loop import train

            for key in tqdm(order, desc="runs"):
                train(cfgs[key])
        else:
            _run_parallel(cfgs, order, jobs)
    return {k: Path(cfgs[k].run_dir) for k in cfgs}


def _finished(cfg: GRPOConfig) -> bool:
    """A run of this very config has finished in its folder: nothing to start.

    Checked in the parent, so a re-run grid returns its finished runs without a
    process each, and a folder holding another config is refused before any run
    starts (rundir.open_run says which fields differ).
    """
    from vgrout.grpo.rundir import open_run

    return (open_run(cfg).path / "result.json").exists()


def _run_parallel(cfgs: dict[RunKey, GRPOConfig], order: list[RunKey], jobs: int) -> None:
    """Up to `jobs` runs at a time, each in a spawned process; all stopped on any exit."""
    ctx = mp.get_context("spawn")
    pending = list(order)
    live: dict[int, tuple[RunKey, Any]] = {}  # by the process's sentinel
    bar = tqdm(total=len(order), desc="runs")
    try:
        while pending or live:
            while pending and len(live) < jobs:
                key = pending.pop(0)
                proc = ctx.Process(target=_run, args=(cfgs[key].to_json(),), name=f"grpo {key}")
                proc.start()
                live[proc.sentinel] = (key, proc)
            for sentinel in wait(list(live)):
                key, proc = live.pop(cast(int, sentinel))
                proc.join()
                if proc.exitcode != 0:
                    raise RuntimeError(
                        f"run_grid: run {key} ({cfgs[key].run_dir}) exited with code "
                        f"{proc.exitcode}; the grid resumes from it when run again"
                    )
                bar.update(1)
    finally:
        bar.close()
        for _, proc in live.values():
            proc.terminate()
        for _, proc in live.values():
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
