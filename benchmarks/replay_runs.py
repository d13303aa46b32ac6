"""Train stored runs of a committed grid again and say whether they repeat exactly.

A grid trained in parts (`python -m vgrout.figures.retrain <set> --continue`)
pairs seeds trained at different revisions; that is sound only if the code in
between changed no run. This replays a few stored runs at the current revision,
on this machine, and compares every step (timings aside) and every evaluation
with the committed records. Trajectories depend on the CPU's float rounding, so
a difference on other hardware says nothing about the code.

    python benchmarks/replay_runs.py powered --arms routeA_c30 oracle_random --seeds 200
"""

from __future__ import annotations

import argparse

from vgrout.figures import retrain
from vgrout.figures.grid import Grid
from vgrout.figures.results import open_results
from vgrout.figures.sets import get_set
from vgrout.grpo.sweep import run_grid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("set", help="a figure set with committed run records, e.g. powered")
    ap.add_argument("--arms", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--runs-dir", default="out/replay")
    a = ap.parse_args()
    fs = get_set(a.set)
    train, analysis = retrain.set_params(fs)
    stored = open_results(analysis["results"] or f"results/{fs.name}").records
    base = retrain.base_config(train)
    arms = {arm: train["arms"][arm] for arm in a.arms}
    new = Grid.from_run_dirs(run_grid(base, arms, a.seeds, f"{a.runs_dir}/{fs.name}", jobs=1))
    same = 0
    for key, rec in sorted(new.records.items()):
        old = stored[key]
        steps, evals = (
            retrain.untimed(rec.steps) == retrain.untimed(old.steps),
            rec.evals == old.evals,
        )
        same += steps and evals
        print(f"{key[0]} s{key[1]}: steps {'identical' if steps else 'DIFFER'}, "
              f"evaluations {'identical' if evals else 'DIFFER'}")  # fmt: skip
    print(f"{same} of {len(new.records)} runs repeat the committed records exactly")
    return 0 if same == len(new.records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
