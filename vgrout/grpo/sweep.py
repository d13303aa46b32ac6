"""Run a grid of GRPO runs (arms x seeds), a few at a time, resumably.

Each run is its own process with one torch thread: two 2-thread jobs on two
cores run ~5x slower than two 1-thread jobs. Every run is started with
resume=True, so re-running a grid (a notebook re-executed, a crash) finishes
only what is missing and returns finished runs at once.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from vgrout.grpo.config import GRPOConfig


def _run(cfg_json: str) -> str:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from vgrout.grpo.loop import train

    return str(train(GRPOConfig.from_json(cfg_json)).run_dir)


def grid_configs(
    base: GRPOConfig, arms: dict[str, dict], seeds, root: str | Path
) -> dict[tuple[str, int], GRPOConfig]:
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
) -> dict[tuple[str, int], Path]:
    """Train every (arm, seed) of the grid; returns their run folders."""
    cfgs = grid_configs(base, arms, seeds, root)
    done: dict[tuple[str, int], Path] = {}
    # seed-major order: a grid stopped part-way holds whole seeds of every arm,
    # which is what paired comparisons over seeds can read
    order = sorted(cfgs, key=lambda k: (list(seeds).index(k[1]), list(arms).index(k[0])))
    if jobs <= 1:
        for key in tqdm(order, desc="runs"):
            done[key] = Path(_run(cfgs[key].to_json()))
        return {k: done[k] for k in cfgs}
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run, cfgs[key].to_json()): key for key in order}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="runs"):
            done[futures[fut]] = Path(fut.result())
    return {k: done[k] for k in cfgs}
