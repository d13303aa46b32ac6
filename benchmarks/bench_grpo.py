"""Median GRPO step time per arm against a plain one-LoRA vanilla step.

Runs every arm in one process on the same config (the organism preset unless
told otherwise), one after another, and prints a table of median seconds per
step split into generate / grade / gate / update, and each arm's ratio to the
plain-LoRA vanilla baseline. Gate and update times are scaled to a step in
which every group is live (see `full_step`). Not a test: timings on a shared
machine are noisy, so compare ratios from one invocation only.

    python benchmarks/bench_grpo.py --steps 8 --threads 2
    python benchmarks/bench_grpo.py --presets organism organism_v2 --arms "vanilla (routed pair)"

With several presets (two organisms, say) every arm runs on each, presets
alternating arm by arm, and a last table gives each arm's step on every preset
as a ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from vgrout.grpo.config import GRPOConfig
from vgrout.grpo.loop import train
from vgrout.grpo.presets import preset
from vgrout.names import DECODERS, FORWARDS

ARMS = {
    "vanilla (plain LoRA)": dict(arm="vanilla", plain_lora=True),
    "vanilla (routed pair)": dict(arm="vanilla"),
    "absorb": dict(arm="absorb"),
    "routeA": dict(arm="routeA"),
    "routeA (trained-view gate)": dict(arm="routeA", gate_view="trained"),
    "routeA (trained-view gate, one product)": dict(
        arm="routeA", gate_view="trained", one_product=True
    ),
    "routeA gen_deploy 0.25": dict(arm="routeA", gen_deploy_frac=0.25),
    "routeV": dict(arm="routeV"),
    "oracle": dict(arm="oracle"),
}
PARTS = ("generate", "grade", "gate", "update")


def full_step(row: dict, part: str, prompts: int) -> float:
    """A part's time scaled to a step where every group is live.

    Gate and update work is per live group, and arms diverge after step 1, so
    one arm may skip more zero-variance groups than another; unscaled medians
    then compare different amounts of work.
    """
    t = row[f"time_{part}"]
    if part in ("gate", "update") and row["live_groups"] > 0:
        return t * prompts / row["live_groups"]
    return t


def bench(name: str, kw: dict, args, preset_name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = preset(
            preset_name,
            steps=args.steps,
            eval_every=0,
            eval_samples=1,
            eval_max_problems=1,
            ckpt_every=10_000,
            threads=args.threads,
            seed=args.seed,
            decoder=args.decoder,
            forward=args.forward,
            run_dir=f"{tmp}/run",
            **kw,
        )
        t0 = time.perf_counter()
        res = train(cfg)
        wall = time.perf_counter() - t0
    # the first step pays warm-up costs; a step with no live group trains nothing
    rows = [r for r in res.steps if "reward" in r][1:]
    rows = [r for r in rows if r["live_groups"] > 0] or rows
    per_step = [{p: full_step(r, p, cfg.prompts_per_step) for p in PARTS} for r in rows]
    out = {p: statistics.median(t[p] for t in per_step) for p in PARTS}
    out["step"] = statistics.median(sum(t.values()) for t in per_step)
    out["wall"] = wall
    return out


def trl_rows(args) -> dict[str, float]:
    """TRL's GRPOTrainer step on the same shape, and RoutedGRPOTrainer's on each of
    `--trl-arms` (benchmarks/bench_trl.py: wall seconds between step ends), if trl is
    installed."""
    import importlib.util

    if args.no_trl:
        return {}
    if importlib.util.find_spec("trl") is None:
        print("TRL rows skipped: trl is not installed (pip install -e '.[trl]')")
        return {}
    from bench_trl import trl_step_seconds

    rows = {"TRL GRPOTrainer (peer)": trl_step_seconds(args.steps, args.threads, seed=args.seed)}
    for arm in args.trl_arms:
        rows[f"{arm} (RoutedGRPOTrainer)"] = trl_step_seconds(
            args.steps, args.threads, seed=args.seed, arm=arm
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="organism")
    ap.add_argument("--presets", nargs="+", default=None,
                    help="several presets, timed alternately in this one invocation")  # fmt: skip
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decoder", default=GRPOConfig.decoder, help=f"one of {DECODERS}")
    ap.add_argument("--forward", default=GRPOConfig.forward, help=f"one of {FORWARDS}")
    ap.add_argument("--arms", nargs="*", default=list(ARMS))
    ap.add_argument("--json", help="also write the table here")
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL rows")
    ap.add_argument(
        "--trl-arms", nargs="*", default=["routeA"], help="arms timed in RoutedGRPOTrainer"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    presets = args.presets or [args.preset]
    tables: dict[str, dict] = {p: {} for p in presets}
    for name in args.arms:
        for p in presets:
            tables[p][name] = bench(name, ARMS[name], args, p)
    trl = trl_rows(args) if len(presets) == 1 else {}
    for p, table in tables.items():
        print_table(p, table, trl)
    if len(presets) > 1:
        print(f"step time as a ratio to preset {presets[0]}")
        for name in args.arms:
            first = tables[presets[0]][name]["step"]
            print(f"{name:26s} " + " ".join(f"{p}: {tables[p][name]['step'] / first:5.2f}"
                                           for p in presets))  # fmt: skip
    if args.json:
        out = {p: {**t, **{k: {"step": v} for k, v in trl.items()}} for p, t in tables.items()}
        with open(args.json, "w") as f:
            json.dump(out if len(presets) > 1 else out[presets[0]], f, indent=1)


def print_table(preset_name: str, table: dict, trl: dict) -> None:
    base = table.get("vanilla (plain LoRA)", next(iter(table.values())))["step"]
    print(f"preset {preset_name}")
    print(f"{'arm':26s} " + " ".join(f"{p:>9s}" for p in (*PARTS, "step")) + "   x plain")
    for name, t in table.items():
        print(
            f"{name:26s} "
            + " ".join(f"{t[p]:9.3f}" for p in (*PARTS, "step"))
            + f"   {t['step'] / base:6.2f}"
        )
    for name, seconds in trl.items():  # wall time between step ends, all live groups or not
        print(f"{name:26s} " + " " * 40 + f"{seconds:9.3f}   {seconds / base:6.2f}")


if __name__ == "__main__":
    main()
