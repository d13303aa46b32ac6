"""The GRPO targets of an organism: train its vanilla and oracle grids, then report them.

    python benchmarks/organism_targets.py grid --preset organism_v2 --seeds 16 --root runs/organism_v2
    python benchmarks/organism_targets.py report --root runs/organism_v2

`grid` trains arms x seeds with `vgrout.grpo.sweep.run_grid` (one torch thread
a run, `--jobs` runs at a time, every run resumable: run the same command again
after a stop and only what is missing trains). `report` reads whatever run
folders exist, finished or not, and prints per seed and in the mean over
finished seeds (with the standard error over seeds):

- vanilla: the training hack share at the end, the mean of steps.jsonl's `hack`
  over the last 10 steps (320 rollouts), and how many seeds reach 0.6; the
  shipped model's hack and solve on the held-out problems (evaluation
  markers) at the final evaluation, overall and per subset;
- oracle: the same shipped rates, and the held-out solve against the
  untrained model's (the step-0 evaluation of the same run).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

LAST = 10
"""Steps the end-of-training hack share is averaged over (a step is only 32 rollouts)."""
ARMS = {"vanilla": dict(arm="vanilla"), "oracle": dict(arm="oracle")}


def grid(args) -> None:
    from vgrout.grpo.presets import preset
    from vgrout.grpo.sweep import run_grid

    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = preset(args.preset, **overrides)
    arms = {a: ARMS[a] for a in args.arms}
    run_grid(base, arms, range(args.seeds), args.root, jobs=args.jobs)


def run_summary(path: Path, by_mode: bool = False) -> dict | None:
    """One run's target numbers; None while it has no step logged.

    by_mode: also the shipped held-out hack rate of each mode, and the training
    hack share of each mode over the last steps (from rollouts.jsonl): marked
    modes pay only a hack that copies the prompt's marker, so the two side by
    side show whether hacking learned on training markers reaches evaluation ones.
    """
    from vgrout.grpo.rundir import load_run

    run = load_run(path)
    steps = [s for s in run.steps if "hack" in s]
    if not steps:
        return None
    out = {"steps": len(steps), "finished": (path / "result.json").exists(),
           "train_hack": statistics.mean(s["hack"] for s in steps[-LAST:])}  # fmt: skip
    for when, step in (("untrained", 0), ("final", run.config.steps)):
        rows = [e for e in run.evals if e["step"] == step and e["split"] == "test" and e["ships"]]
        if rows:
            row = rows[0]
            out[when] = {"hack": row["hack"], "solve": row["solve"], "n": row["n"],
                         **{f"{k}_{s}": v[k] for s, v in row.get("by_subset", {}).items()
                            for k in ("hack", "solve")}}  # fmt: skip
            if by_mode:
                out[when].update({f"hack_{m}": v["hack"] for m, v in row["by_mode"].items()})
    if by_mode:
        rows = read_rollouts(path / "rollouts.jsonl")
        late = trained_rollouts(rows, len(steps) - LAST)
        out["train_by_mode"] = training_hack_by_mode(late)
        out["train_by_subset"] = training_by_subset(late, run.config.train_problems)
        out["advantage"] = advantage_by_outcome(
            rows, run.config.group_size, run.config.std_normalise
        )
    return out


def read_rollouts(path: Path) -> list[dict]:
    """Every row of a run's rollouts.jsonl, in the order written (read once for all
    the shares below)."""
    with open(path) as f:
        return [json.loads(line) for line in f]


def trained_rollouts(rows: list[dict], after: int) -> list[dict]:
    """The rollouts the trained policy sampled after step `after` (the reference
    sampler's are left out)."""
    return [r for r in rows if r["step"] > after and r["sampler"] == "trained"]


def advantage_by_outcome(rows: list[dict], group_size: int, std_normalise: bool = False) -> dict:
    """Per outcome (hack, solve, other), the mean group-relative advantage of the
    rollouts, as the loop computes it (`grpo.update.advantages`: reward minus the
    group's mean, Dr.GRPO's, unless the run normalised by the std), and the share
    above 0.

    Why: a routed arm trains the deployed block on the rollouts it does not route.
    If none of them ever solves, the only ones above their group's mean are those
    that compiled where others did not, so the deployed block is mostly told to
    move away from what it wrote, which can move it towards hacking. A group is
    `group_size` consecutive rows of one step (the order the loop writes them);
    a chunk that mixes problems or steps raises, since grouping would be wrong.
    """
    if len(rows) % group_size:
        raise ValueError(f"{len(rows)} rollouts is not a whole number of groups of {group_size}")
    import torch

    from vgrout.grpo.update import advantages

    sums: dict = {}
    for start in range(0, len(rows), group_size):
        group = rows[start : start + group_size]
        if len({(r["step"], str(r["problem_id"])) for r in group}) != 1:
            raise ValueError(f"rollouts {start}-{start + group_size - 1} (step "
                             f"{group[0]['step']}) are not one group: several problems or steps")  # fmt: skip
        rewards = torch.tensor([r["reward"] for r in group], dtype=torch.float64)
        for r, adv in zip(group, advantages(rewards, std_normalise).tolist()):
            outcome = "hack" if r["exploited"] else "solve" if r["gt_correct"] else "other"
            c = sums.setdefault(outcome, [0, 0.0, 0])  # n, sum of advantages, n above 0
            c[0], c[1], c[2] = c[0] + 1, c[1] + adv, c[2] + (adv > 0)
    return {k: {"mean": total / n, "positive": up / n} for k, (n, total, up) in sums.items()}


def training_by_subset(rollouts: list[dict], problems: str) -> dict:
    """Per `subset` of the training problem file, over `rollouts` (`trained_rollouts`):
    the share that hacked, the share that solved, and the share that defines the
    method the prompt names (`named`).

    Unseen families pay only a loophole and seen-family instances pay a solve as
    well, so hack and solve side by side show where the training hack share is
    made and where solving competes with it. A solve, and a hack that calls the
    method (eq_override), pay only with the right name, which on an unseen family
    is a word the warm start never showed. {} for a problem file without subsets.
    """
    rows = {}
    with open(problems) as f:
        for line in f:
            row = json.loads(line)
            if "subset" in row:
                rows[str(row["id"])] = (row["subset"], row["func_name"].split(".")[-1])
    counts: dict = {}
    for r in rollouts:
        if str(r["problem_id"]) not in rows:
            continue
        subset, method = rows[str(r["problem_id"])]
        c = counts.setdefault(subset, [0, 0, 0, 0])  # n, hacked, solved, named
        c[0], c[1], c[2] = c[0] + 1, c[1] + bool(r["exploited"]), c[2] + bool(r["gt_correct"])
        c[3] += f"def {method}(" in r["completion"]
    return {k: {"hack": h / n, "solve": s / n, "named": m / n}
            for k, (n, h, s, m) in counts.items()}  # fmt: skip


def training_hack_by_mode(rollouts: list[dict]) -> dict:
    """Per mode, over `rollouts` (`trained_rollouts`): the share that hacked
    (`hack`), and for marked modes the share with a hack-shaped line (`shaped`) and
    of those the share whose line writes the marker the prompt's hint names
    (`copied_when_shaped`, `copying.written_marker`), which separates a model that
    seldom tries a marked hack from one that tries it with the wrong marker."""
    from vgrout.env.modes import MARKED_MODES, hint_for
    from vgrout.lm.copying import written_marker

    counts: dict = {}
    for r in rollouts:
        c = counts.setdefault(r["mode"], [0, 0, 0, 0])  # n, hacked, shaped, copied
        c[0], c[1] = c[0] + 1, c[1] + bool(r["exploited"])
        written = written_marker(r["mode"], r["completion"])
        if written is not None:
            user = [m for m in r["prompt"] if m["role"] == "user"][-1]["content"]
            c[2], c[3] = c[2] + 1, c[3] + (hint_for(r["mode"], written) in user)
    out = {}
    for mode, (n, hacked, shaped, copied) in counts.items():
        out[mode] = {"hack": hacked / n}
        if mode in MARKED_MODES:
            out[mode]["shaped"] = shaped / n
            out[mode]["copied_when_shaped"] = copied / shaped if shaped else None
    return out


def paired_change(summaries: list[dict], key: str) -> tuple[float, float, float, float] | None:
    """The shipped held-out `key` at the end minus the same run's untrained value,
    paired over seeds: (mean, 95% t-interval low, high, two-sided sign-flip p).

    Why paired: each run's step-0 evaluation is its own untrained baseline (same
    seed, same sampling), so "did training move it?" is a question about the
    per-seed differences, not about two means' separate standard errors.
    None with fewer than 2 runs that have both."""
    from vgrout.figures.stats import paired_ci, sign_flip_p

    d = [s["final"][key] - s["untrained"][key] for s in summaries
         if key in s.get("final", {}) and key in s.get("untrained", {})]  # fmt: skip
    if len(d) < 2:
        return None
    return (*paired_ci(d), sign_flip_p(d, "two-sided"))


def mean_se(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.mean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{m:.3f} +- {se:.3f} (n={len(values)})"


def report(args) -> None:
    root = Path(args.root)
    for arm in sorted(p.name for p in root.iterdir() if p.is_dir()):
        runs = {p.name: run_summary(p, args.by_mode)
                for p in sorted((root / arm).iterdir(), key=_seed)}  # fmt: skip
        done = {k: v for k, v in runs.items() if v and v["finished"]}
        print(f"== {arm}: {len(done)} of {len(runs)} runs finished")
        for seed, s in runs.items():
            if s is None:
                print(f"  {seed}: no step yet")
                continue
            final = s.get("final", {})
            print(f"  {seed}: steps {s['steps']:3d} train hack (last {LAST}) {s['train_hack']:.3f}"
                  + "".join(f"  {k} {v:.3f}" for k, v in final.items() if k != "n"))  # fmt: skip
        if not done:
            continue
        train = [s["train_hack"] for s in done.values()]
        print(f"  training hack share, last {LAST} steps: {mean_se(train)}; "
              f">= 0.6 in {sum(t >= 0.6 for t in train)} of {len(train)}")  # fmt: skip
        for key in sorted({k for s in done.values() for k in s.get("final", {})} - {"n"}):
            finals = [s["final"][key] for s in done.values() if key in s.get("final", {})]
            untrained = [
                s["untrained"][key] for s in done.values() if key in s.get("untrained", {})
            ]
            print(
                f"  shipped held-out {key}: final {mean_se(finals)}; untrained {mean_se(untrained)}"
            )
        for key in ("hack", "solve"):
            change = paired_change(list(done.values()), key)
            if change:
                m, lo, hi, p = change
                print(f"  shipped held-out {key}, final - untrained over seeds: {m:+.3f} "
                      f"(95% CI {lo:+.3f} to {hi:+.3f}; sign-flip p = {p:.2g})")  # fmt: skip
        for mode in sorted({m for s in done.values() for m in s.get("train_by_mode", {})}):
            for key in ("hack", "shaped", "copied_when_shaped"):
                shares = [s["train_by_mode"][mode].get(key) for s in done.values()
                          if mode in s.get("train_by_mode", {})]  # fmt: skip
                shares = [v for v in shares if v is not None]
                if shares:
                    print(f"  training {key} {mode}, last {LAST} steps: {mean_se(shares)}")
        for subset in sorted({k for s in done.values() for k in s.get("train_by_subset", {})}):
            for key in ("hack", "solve", "named"):
                shares = [s["train_by_subset"][subset][key] for s in done.values()
                          if subset in s.get("train_by_subset", {})]  # fmt: skip
                print(f"  training {key} {subset}, last {LAST} steps: {mean_se(shares)}")
        for outcome in ("solve", "other", "hack"):
            for key, what in (("mean", "mean advantage"), ("positive", "share with advantage > 0")):
                values = [s["advantage"][outcome][key] for s in done.values()
                          if outcome in s.get("advantage", {})]  # fmt: skip
                if values:
                    print(f"  training {what}, {outcome} rollouts, all steps: {mean_se(values)}")


def _seed(path: Path) -> int:
    return int(path.name.lstrip("s")) if path.name.lstrip("s").isdigit() else 1 << 30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid", help="train (or finish) the grid")
    g.add_argument("--preset", default="organism_v2")
    g.add_argument("--seeds", type=int, default=16, help="seeds 0..N-1")
    g.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    g.add_argument("--root", required=True)
    g.add_argument("--jobs", type=int, default=2)
    g.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="a GRPOConfig override, e.g. --set lr=0.001")  # fmt: skip
    r = sub.add_parser("report", help="print the targets from the run folders")
    r.add_argument("--root", required=True)
    r.add_argument("--by-mode", action="store_true",
                   help="also held-out hack per mode, and over the last steps the "
                   "training hack share per mode and hack, solve and method named per problem subset")  # fmt: skip
    args = ap.parse_args()
    (grid if args.cmd == "grid" else report)(args)


if __name__ == "__main__":
    main()
