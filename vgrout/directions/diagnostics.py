"""`python -m vgrout.directions.diagnostics`: the site x source table for a policy and a pool.

The pools live in `pools.py` and the table in `table.py`; the names notebooks
import from here (`LabelledPool`, the pool loaders, `routing_table`,
`split_by_group`) are re-exported so this module stays their one entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from vgrout.directions.pools import (
    LabelledPool,
    labelled_pool_from_jsonl,
    labelled_pool_from_policy,
    reference_pool,
    rendered_pool,
)
from vgrout.directions.selfpairs import check_disjoint, split_problem_ids
from vgrout.directions.table import PairSource, TableSpec, routing_table, split_by_group
from vgrout.files import atomic_write, atomic_write_text
from vgrout.lm.spec import COMMITTED_SAMPLING
from vgrout.names import SITES

__all__ = [
    "LabelledPool",
    "labelled_pool_from_jsonl",
    "labelled_pool_from_policy",
    "main",
    "reference_pool",
    "rendered_pool",
    "routing_table",
    "split_by_group",
]


def _pool_for(args, model, tokenizer, fit: Sequence[str] = ()) -> LabelledPool:
    """The pool to score; rows of the self-generated direction's fit problems left out."""
    if args.pool == "policy":
        from vgrout.env import load_problems

        problems = load_problems(args.problems, args.modes.split(","))
        problems = [p for p in problems if str(p.id) not in set(fit)]
        return labelled_pool_from_policy(
            model,
            tokenizer,
            problems,
            args.n_per_problem,
            spec=COMMITTED_SAMPLING.replace(temperature=args.temperature),
            seed=args.seed,
        )
    if args.pool == "reference":
        return reference_pool(max_per_class=args.max_per_class, seed=args.seed)
    if args.pool == "rendered":
        return rendered_pool(args.problems).without_problems(fit)
    return labelled_pool_from_jsonl(args.pool).without_problems(fit)


def _sources(args, model, tokenizer, fit: Sequence[str] = ()) -> dict:
    from vgrout.env.pairs import load_pairs

    sources: dict = {}
    for name, spec in (("authored", args.pairs), ("placebo", args.placebo)):
        if spec:
            sources[name] = PairSource(tuple(load_pairs(spec)))
    if args.pairs and args.t_stat:
        sources["authored_t"] = PairSource(sources["authored"].pairs, "t")
    if args.self_samples > 0:
        from vgrout.directions.selfpairs import self_generated_pairs
        from vgrout.env import load_problems

        problems = load_problems(args.self_problems, args.modes.split(","))
        problems = [p for p in problems if str(p.id) in set(fit)]
        pairs = self_generated_pairs(
            model,
            tokenizer,
            problems,
            n_samples=args.self_samples,
            spec=COMMITTED_SAMPLING.replace(temperature=args.temperature),
            seed=args.seed,
        )
        print(f"self-generated pairs: {len(pairs)} of {len(problems)} problems")
        if pairs:
            sources["self"] = PairSource(tuple(pairs))
    sources["oracle"], sources["haar"] = "oracle", "haar"
    return sources


def _fit_problems(args) -> list[str]:
    """Problem ids the self-generated pairs are written on (none without self pairs)."""
    if args.self_samples <= 0:
        return []
    from vgrout.env.problems import read_rows

    ids = [fields["id"] for _, fields in read_rows(args.self_problems)]
    return split_problem_ids(ids, args.fit_share, args.split_seed)[0]


def _parser():
    import argparse

    from vgrout import cli, paths

    ap = argparse.ArgumentParser(
        prog="python -m vgrout.directions.diagnostics", description=main.__doc__
    )
    ap.add_argument("--policy", default="organism")
    ap.add_argument(
        "--pool",
        default="policy",
        help="'policy' (sample and grade), 'reference', 'rendered', or a rollouts.jsonl path",
    )
    ap.add_argument("--problems", default=str(paths.TRAIN_PROBLEMS), help="the pool's problems")
    ap.add_argument("--modes", default="run_tests")
    ap.add_argument("--n-per-problem", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-per-class", type=int, default=128)
    ap.add_argument("--pairs", default=f"{paths.PAIRS}#authored")
    ap.add_argument("--placebo", default=f"{paths.PAIRS}#placebo")
    ap.add_argument("--self-samples", type=int, default=8, help="0: no self-generated pairs")
    ap.add_argument("--self-problems", default=str(paths.TRAIN_PROBLEMS))
    ap.add_argument(
        "--fit-share",
        type=float,
        default=0.5,
        help="share of --self-problems the self pairs are written on; the pool never uses them",
    )
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--t-stat", action="store_true", help="add the authored t-statistic direction")
    ap.add_argument("--sites", default=",".join(SITES))
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--init", default="gaussian")
    ap.add_argument("--q", type=float, default=0.1)
    ap.add_argument(
        "--hack-share",
        type=float,
        default=None,
        help="F0.5 as if hacks were this share of rollouts (default: the pool's)",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-band", type=int, default=200)
    ap.add_argument("--max-completion-tokens", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--out", required=True, help="CSV path; a .json with the settings goes beside it"
    )
    cli.add_debug_flag(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    """Build the site x source table for a policy and a labelled pool; write CSV + JSON."""
    import sys

    args = _parser().parse_args(argv)
    from vgrout.adapters import ablate_quarantine, attach_routed_adapters
    from vgrout.lm.load import load_policy

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, tokenizer = load_policy(args.policy)
    fit = _fit_problems(args)
    pool = _pool_for(args, model, tokenizer, fit)
    if args.pool != "reference":  # the reference pool's problems are another set (LeetCode)
        check_disjoint(pool.groups, fit, f"pool {pool.name}")
    print(f"pool {pool.name}: {pool.counts()[0]} hack, {pool.counts()[1]} clean")
    sources = _sources(args, model, tokenizer, fit)
    model = attach_routed_adapters(model, r=args.r, init=args.init, seed=args.seed)
    with ablate_quarantine(model):
        spec = TableSpec(q=args.q, n_boot=args.n_boot, seed=args.seed, n_band=args.n_band,
                         hack_share=args.hack_share,
                         max_completion_tokens=args.max_completion_tokens)  # fmt: skip
        table = routing_table(model, tokenizer, pool, sources, args.sites.split(","), spec)
    out = Path(args.out)
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    meta = dict(
        command="python -m vgrout.directions.diagnostics "
        + " ".join(sys.argv[1:] if argv is None else argv),
        settings=vars(args),
        n_hack=pool.counts()[0],
        n_clean=pool.counts()[1],
        n_pairs={
            k: len(v.pairs)
            for k, v in sources.items()
            if isinstance(v, PairSource) and v.method == "mean"
        },  # fmt: skip
        self_fit_problems=fit,
    )
    if args.policy == "organism":  # which build the table was measured on
        from vgrout.lm.shipped import read_record

        record = read_record()
        meta["organism"] = {"key": record["key"], "weights_sha256": record["weights_sha256"]}
    atomic_write_text(out.with_suffix(".json"), json.dumps(meta, indent=2))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    import sys

    from vgrout import cli

    sys.exit(cli.run(main, "python -m vgrout.directions.diagnostics"))
