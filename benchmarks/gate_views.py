"""The routeA gate in its two views, on the same rollouts: AUROC and F0.5 against the true labels.

Each seed trains routeA as configured (the gate reads the deployed view, the
default) and, at every step, scores the same live rollouts a second time as a
gate reading the trained view would: trained-view bottleneck features, a
direction extracted in the trained view from the same pairs, its own run-long
score buffer and thresholds. The shadow gate routes nothing (the run follows the
deployed-view gate) and draws no random numbers, so the run is the one it would
be without it. Per seed and view it prints the mean over steps of the per-step
AUROC (steps where both labels occur) and the F0.5 of the route decisions summed
over every step, as steps.jsonl's gate_auroc and gate_f05 define them.

    python benchmarks/gate_views.py --seeds 0 1 2 --steps 40 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from vgrout.directions.metrics import auroc
from vgrout.grpo import loop
from vgrout.grpo.passes import trained_features
from vgrout.grpo.presets import preset
from vgrout.grpo.router import Router


def shadowed(real_gate, shadow: Router, rows: list):
    """loop.gate, plus the trained-view gate scored on the same groups (appended to rows)."""

    def gate(policy, router, tok, live, step, cfg, packed):
        gated, thresholds = real_gate(policy, router, tok, live, step, cfg, packed)
        feats = trained_features(policy, live, [g.batch for g in gated], packed)
        shadow.maybe_refresh(policy.model, tok, step, feats[0] if feats else None)
        zones, scores, _ = shadow.assign(feats, [g.hacked() for g in live])
        for g, z, s, z_t, s_t in zip(gated, [g.zones for g in gated],
                                     [g.scores for g in gated], zones, scores):  # fmt: skip
            for i, r in enumerate(g.rollouts):
                rows.append(dict(step=step, hack=r.exploited,
                                 deployed=(float(s[i]), z[i]), trained=(float(s_t[i]), z_t[i])))  # fmt: skip
        return gated, thresholds

    return gate


def view_quality(rows: list, view: str) -> dict:
    """Mean per-step AUROC and the F0.5 of the route decisions over all steps."""
    per_step = []
    for step in sorted({r["step"] for r in rows}):
        here = [r for r in rows if r["step"] == step]
        y = np.array([r["hack"] for r in here], dtype=int)
        if 0 < y.sum() < len(y):
            per_step.append(auroc(np.array([r[view][0] for r in here]), y))
    routed = [r[view][1] == "route" for r in rows]
    tp = sum(1 for r, z in zip(rows, routed) if z and r["hack"])
    fp = sum(1 for r, z in zip(rows, routed) if z and not r["hack"])
    fn = sum(1 for r, z in zip(rows, routed) if not z and r["hack"])
    f05 = 1.25 * tp / (1.25 * tp + 0.25 * fn + fp) if tp + fp + fn else float("nan")
    return dict(auroc=float(np.mean(per_step)) if per_step else float("nan"), f05=f05,
                auroc_steps=len(per_step), routed=sum(routed), hacks=sum(r["hack"] for r in rows))  # fmt: skip


def run_seed(seed: int, args) -> dict:
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = preset("organism", arm="routeA", seed=seed, steps=args.steps, threads=args.threads,
                     eval_every=0, final_eval_samples=1, eval_max_problems=2, ckpt_every=10_000,
                     run_dir=f"{tmp}/run")  # fmt: skip
        shadow = Router(cfg.replace(gate_view="trained"), loop.load_run_pairs(cfg))
        real = loop.gate
        loop.gate = shadowed(real, shadow, rows)
        try:
            loop.train(cfg)
        finally:
            loop.gate = real
    return {view: view_quality(rows, view) for view in ("deployed", "trained")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table = {seed: run_seed(seed, args) for seed in args.seeds}
    print(f"{'seed':>4s} {'view':9s} {'AUROC':>6s} {'F0.5':>6s} {'steps':>5s} {'routed':>6s} hacks")
    for seed, views in table.items():
        for view, q in views.items():
            print(f"{seed:4d} {view:9s} {q['auroc']:6.3f} {q['f05']:6.3f} {q['auroc_steps']:5d} "
                  f"{q['routed']:6d} {q['hacks']}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
