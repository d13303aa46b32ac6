"""Wall time of one 100-step organism run here against the same run at an older commit.

The run is the one the decisive experiment repeats: the organism preset, 100
steps, the final evaluation with 8 completions per problem in both views and
both splits, one thread. The older commit runs from a temporary git worktree
with its own defaults (its decoder, its evaluation), so the ratio is what a
researcher gains by updating; both runs go back to back in this one process,
baseline first, so machine load affects both alike. Prints both wall times, each
with where it went (generate / grade / gate / update summed over the steps, and
the rest: start-up, checkpoints, final evaluation, export) and, last, the ratio
(this tree / baseline).

A run's cost depends on what its policy learns to write (completion lengths,
programs that take long to grade), and trees that round differently follow
different trajectories from the same seed; so with several --seeds each seed
runs in both trees, baseline first, and the last line is the ratio of the
summed wall times.

    python benchmarks/bench_run.py --baseline ffca967 --steps 100 --arm routeA --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def breakdown(run_dir: Path, wall: float) -> str:
    """Where a run's wall time went: summed step parts from steps.jsonl, the rest
    (start-up, checkpoints, the final evaluation, the export) as one figure."""
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "reward" in r]
    if not rows:
        return "no step rows"
    parts = {k[5:]: sum(r.get(k, 0.0) for r in rows) for k in rows[0] if k.startswith("time_")}
    rest = wall - sum(parts.values())
    return "  ".join(f"{k} {v:.1f}" for k, v in {**parts, "rest": rest}.items())


def run_once(tree: Path, run_dir: Path, args, seed: int) -> float:
    """Seconds of `python -m vgrout.grpo` imported from `tree` (its own code and data)."""
    cmd = [
        sys.executable, "-m", "vgrout.grpo", "--preset", "organism", "--arm", args.arm,
        "--seed", str(seed), "--steps", str(args.steps), "--threads", "1",
        "--eval-every", "0", "--eval-samples", str(args.samples), "--run-dir", str(run_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    for var in ("VGROUT_DATA", "VGROUT_RUNS", "VGROUT_CACHE"):
        env.pop(var, None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench_run: run in {tree} failed:\n{done.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", required=True, help="commit to compare against")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--arm", default="routeA")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument(
        "--samples",
        type=int,
        default=8,
        help="completions per problem, final eval (this tree's organism preset draws final_eval_samples = 8 whatever this says, so keep 8 for a like-for-like ratio)",
    )
    args = ap.parse_args()
    total = {"old": 0.0, "new": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old),
                        args.baseline], check=True)  # fmt: skip
        try:
            for seed in args.seeds:
                for key, name, tree in (
                    ("old", f"baseline {args.baseline}", old),
                    ("new", "this tree", REPO),
                ):
                    run_dir = Path(tmp) / f"run-{key}-{seed}"
                    wall = run_once(tree, run_dir, args, seed)
                    total[key] += wall
                    print(f"seed {seed} {name:18s}: {wall:8.1f} s", flush=True)
                    print(f"  ({breakdown(run_dir, wall)})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)])
    print(
        f"summed over seeds {args.seeds}: baseline {total['old']:.1f} s, "
        f"this tree {total['new']:.1f} s"
    )
    print(f"ratio (this tree / baseline): {total['new'] / total['old']:.3f}")


if __name__ == "__main__":
    main()
