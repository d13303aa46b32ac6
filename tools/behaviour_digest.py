"""Short GRPO runs of every arm, forward and decoder, reduced to what a refactor must keep.

A change that only moves code must leave every run bit for bit where it was:
the same rollouts (token for token, hence the same texts), the same step rows
(losses, KL, gradient norms, gate scores and thresholds), the same evaluation
rows and the same exported adapter. This runs a matrix of short runs on the
organism and writes, per run, those rows without their timings and the sha256
of the exported adapter's files; `--compare` diffs two such files.

    python tools/behaviour_digest.py --out before.json        # on the old tree
    python tools/behaviour_digest.py --out after.json         # on the new one
    python tools/behaviour_digest.py --compare before.json after.json

It uses only `preset` and `train`, so one copy runs against an older checkout
(`PYTHONPATH=<old checkout> python tools/behaviour_digest.py ...`). Each run
exercises more than its arm: routeA samples a quarter of each group from the
deployed view, keeps a low tail and pays a KL term (the deployed, trained and
reference passes); oracle adds teacher demos and hint-free prompts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

ARMS = {
    "vanilla": dict(arm="vanilla"),
    "plain_lora": dict(arm="vanilla", plain_lora=True),
    "absorb": dict(arm="absorb", gen_deploy_frac=0.25),
    "routeA": dict(arm="routeA", gen_deploy_frac=0.25, keep_low_tail=True, kl_beta=1e-2),
    "routeV": dict(arm="routeV", gen_deploy_frac=0.25),
    "oracle": dict(arm="oracle", teacher_n_per_prompt=1, teacher_off_step=3, unhackable_frac=0.25),
}
FORWARDS = ("hf", "packed")
DECODERS = ("hf", "lean", "fused")
SHORT = dict(
    steps=6,
    max_new_tokens=48,
    eval_every=3,
    eval_samples=1,
    final_eval_samples=2,
    eval_max_problems=3,
    gate_warmup=8,
    refresh_every=2,
    ckpt_every=3,
    threads=1,
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


VARIES = ("adapter_config.json", "README.md")
"""Exported files that name the run's folder or the base model's (they differ with the checkout)."""


def digest_run(folder: Path) -> dict:
    """The run's logs without timings, and a hash of every exported file but `VARIES`."""
    steps = [{k: v for k, v in r.items() if not k.startswith("time_")}
             for r in read_jsonl(folder / "steps.jsonl")]  # fmt: skip
    files = sorted(p for p in (folder / "deployed_adapter").rglob("*")
                   if p.is_file() and p.name not in VARIES)  # fmt: skip
    return {
        "steps": steps,
        "rollouts": read_jsonl(folder / "rollouts.jsonl"),
        "eval": read_jsonl(folder / "eval.jsonl"),
        "export": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }


def run_all(arms: list[str], forwards, decoders, seed: int) -> dict:
    import torch

    import vgrout
    from vgrout.grpo.loop import train
    from vgrout.grpo.presets import preset

    print(f"vgrout from {Path(vgrout.__file__).parent}", flush=True)
    torch.set_num_threads(1)
    out = {}
    for arm in arms:
        for fwd in forwards:
            for dec in decoders:
                name = f"{arm}/{fwd}/{dec}"
                t0 = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = preset("organism", **SHORT, **ARMS[arm], forward=fwd, decoder=dec,
                                 seed=seed, run_dir=f"{tmp}/run")  # fmt: skip
                    train(cfg)
                    out[name] = digest_run(Path(tmp) / "run")
                print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def first_difference(a, b, where: str = "") -> str | None:
    """Where two JSON values first differ (None when equal)."""
    if type(a) is not type(b):
        return f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'after' if k in b else 'before'}"
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} rows before, {len(b)} after"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def compare(before: dict, after: dict) -> int:
    for run in (*before.values(), *after.values()):  # digests written before VARIES was kept out
        for name in VARIES:
            run["export"].pop(name, None)
    bad = 0
    for name in before:
        d = first_difference(before[name], after.get(name), name) if name in after else "missing"
        print(f"{name:28s} {'identical' if d is None else 'DIFFERS ' + d}")
        bad += d is not None
    print(f"{len(before) - bad} of {len(before)} runs identical")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="write the digest here")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--arms", nargs="*", default=list(ARMS))
    ap.add_argument("--forwards", nargs="*", default=list(FORWARDS))
    ap.add_argument("--decoders", nargs="*", default=list(DECODERS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        return compare(a, b)
    if not args.out:
        ap.error("give --out or --compare")
    result = run_all(args.arms, args.forwards, args.decoders, args.seed)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
