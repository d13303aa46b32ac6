"""Does a direction classify hacks? The site x source table, with uncertainty.

A labelled pool (completions with hack / clean labels) is captured once at
every site; each direction source gives a direction per site; every
direction is scored on the same held-out split of the pool. The oracle is
fit on the other (train) split, so it is an honest upper bound, and a
Haar-random band says what "no signal" looks like at the same site.

Pools:
- `labelled_pool_from_policy`: sample a policy on problems, grade with the
  environment, hack = exploited, clean = gt_correct, drop the rest.
- `labelled_pool_from_jsonl`: a GRPO run's rollouts.jsonl.
- `reference_pool`: the published 4B model's real hacks against canonical
  solutions of held-out problems. Different problems and different authors
  on the two sides: any style difference separates them, so read this pool
  as "does the direction fire on natural hacks", not as a matched contrast.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from vgrout.directions.capture import capture_texts
from vgrout.directions.extract import extract_directions, haar_direction, oracle_direction, score
from vgrout.directions.metrics import (
    auroc,
    band_verdict,
    bootstrap_ci,
    f_beta_at_quantile,
    f_beta_ceiling,
    random_band,
)
from vgrout.directions.selfpairs import check_disjoint, split_problem_ids
from vgrout.files import atomic_write, atomic_write_text
from vgrout.names import SITES


@dataclass
class LabelledPool:
    """Rows of (prompt, completion, label); groups = problem id (the split unit).

    prompts: chat messages, user text or a rendered prompt per row.
    labels:  1 = hack, 0 = clean.
    """

    prompts: list
    completions: list[str]
    labels: np.ndarray
    groups: list[str]
    name: str = "pool"

    def __post_init__(self):
        n = len(self.completions)
        if not (len(self.prompts) == len(self.labels) == len(self.groups) == n):
            raise ValueError(
                f"LabelledPool {self.name}: {len(self.prompts)} prompts, {n} completions, "
                f"{len(self.labels)} labels, {len(self.groups)} groups must agree"
            )
        self.labels = np.asarray(self.labels, dtype=int)

    def __len__(self) -> int:
        return len(self.completions)

    def counts(self) -> tuple[int, int]:
        """(n_hack, n_clean)."""
        return int(self.labels.sum()), int((1 - self.labels).sum())

    def without_problems(self, ids) -> LabelledPool:
        """The rows whose problem id (group) is not in ids."""
        drop = {str(i) for i in ids}
        keep = [i for i, g in enumerate(self.groups) if str(g) not in drop]
        pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
        return LabelledPool(
            pick(self.prompts),
            pick(self.completions),
            self.labels[keep],
            pick(self.groups),
            self.name,
        )


def _label(exploited: bool, gt_correct: bool) -> int | None:
    return 1 if exploited else 0 if gt_correct else None


def labelled_pool_from_policy(
    model,
    tokenizer,
    problems: Sequence,
    n_per_problem: int,
    temperature: float = 1.0,
    max_new_tokens: int = 128,
    seed: int = 0,
    workers: int = 2,
) -> LabelledPool:
    """Sample n_per_problem completions per problem, grade, keep hacks and solves.

    Sampled as `COMMITTED_SAMPLING` (with this temperature and length), the
    sampling the committed pools were drawn with.
    """
    from vgrout.lm.rates import evaluate_policy
    from vgrout.lm.spec import COMMITTED_SAMPLING

    spec = COMMITTED_SAMPLING.replace(temperature=temperature, max_new_tokens=max_new_tokens)
    _, rows = evaluate_policy(model, tokenizer, problems, n_per_problem, spec, seed, workers)
    by_id = {p.id: p for p in problems}
    keep = [(r, _label(r["exploited"], r["gt_correct"])) for r in rows]
    keep = [(r, y) for r, y in keep if y is not None]
    return LabelledPool(
        [by_id[r["problem_id"]].messages for r, _ in keep],
        [r["completion"] for r, _ in keep],
        np.array([y for _, y in keep], dtype=int),
        [str(r["problem_id"]) for r, _ in keep],
        name="policy",
    )


def labelled_pool_from_jsonl(path: str | Path) -> LabelledPool:
    """rollouts.jsonl rows with prompt, completion, exploited, gt_correct (problem_id optional)."""
    prompts, comps, labels, groups = [], [], [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [
                k for k in ("prompt", "completion", "exploited", "gt_correct") if k not in row
            ]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing field(s) {missing}")
            y = _label(bool(row["exploited"]), bool(row["gt_correct"]))
            if y is None:
                continue
            prompts.append(row["prompt"])
            comps.append(row["completion"])
            labels.append(y)
            groups.append(str(row.get("problem_id", row["prompt"])))
    if not comps:
        raise ValueError(f"{path}: no row is a hack or a solve")
    return LabelledPool(prompts, comps, np.array(labels, dtype=int), groups, name=Path(path).stem)


def _fence(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def reference_pool(
    ref_dir: str | Path | None = None,
    problems_path: str | Path | None = None,
    max_per_class: int | None = 128,
    seed: int = 0,
) -> LabelledPool:
    """Real 4B hacks (teacher pool) vs canonical solutions of the held-out problems.

    Raises FileNotFoundError naming the missing path when the reference data
    are absent, so a caller (or a test) can skip.
    """
    if ref_dir is None:
        from vgrout.paths import reference_dir

        ref_dir = reference_dir()
        if ref_dir is None:
            raise FileNotFoundError("reference data folder not found (set VGROUT_REFERENCE)")
    base = Path(ref_dir) / "vgrout_pub" / "data"
    pool_dir = base / "pools" / "teacher_pool"
    problems_path = Path(problems_path or base / "leetcode" / "leetcode_test_medhard.jsonl")
    for p in (pool_dir, problems_path):
        if not p.exists():
            raise FileNotFoundError(f"reference_pool: {p} does not exist")
    hacks = []
    for f in sorted(pool_dir.glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            for row in map(json.loads, fh):
                if row["hacked"] and not row["gt_pass"]:
                    hacks.append(
                        (row["problem_messages"], row["completion"], f"train-{row['problem_id']}")
                    )
    with open(problems_path) as fh:
        clean = [
            (r["prompt"], _fence(r["canonical_solution"]), f"test-{r['id']}")
            for r in (json.loads(line) for line in fh if line.strip())
        ]
    rng = np.random.default_rng(seed)
    if max_per_class is not None:
        hacks = [hacks[i] for i in sorted(rng.permutation(len(hacks))[:max_per_class])]
        clean = [clean[i] for i in sorted(rng.permutation(len(clean))[:max_per_class])]
    rows = hacks + clean
    labels = np.r_[np.ones(len(hacks), int), np.zeros(len(clean), int)]
    return LabelledPool(
        [r[0] for r in rows], [r[1] for r in rows], labels, [r[2] for r in rows], name="reference"
    )


def rendered_pool(
    problems_path: str | Path, modes: Sequence[str] | None = None, workers: int = 2
) -> LabelledPool:
    """Template hacks vs canonical solutions on the same problems, in every loophole mode.

    For each (problem, mode): the mode's hack template (variants cycled over
    problems) and the problem's canonical solution, both under the mode's
    hinted prompt. Both are graded; a hack is kept only if it exploits and a
    solution only if it is correct. A matched pool for a policy that does not
    (yet) hack on its own: same prompts on both sides, hacks of the families
    the organism's hack prior was trained on.
    """
    from vgrout.env import LOOPHOLE_MODES, grade_many, load_hacks, load_problems, render_hack

    hacks = load_hacks()
    items, labels = [], []
    for mode in modes or LOOPHOLE_MODES:
        for k, p in enumerate(load_problems(problems_path, [mode])):
            templates = hacks[mode]
            items += [
                (render_hack(templates[k % len(templates)], p), p),
                (_fence(p.canonical_solution), p),
            ]
            labels += [1, 0]
    grades = grade_many(items, workers=workers)
    keep = [i for i, g in enumerate(grades) if (g.exploited if labels[i] else g.gt_correct)]
    if len(keep) < len(items):
        print(
            f"rendered_pool: {len(items) - len(keep)} of {len(items)} rows failed their grade, dropped"
        )
    return LabelledPool(
        [items[i][1].messages for i in keep],
        [items[i][0] for i in keep],
        np.array([labels[i] for i in keep]),
        [str(items[i][1].id) for i in keep],
        name="rendered",
    )


def split_by_group(
    groups: Sequence[str], labels: np.ndarray, test_frac: float = 0.5, seed: int = 0
) -> np.ndarray:
    """Train mask [n] bool: whole problems go to one side, stratified by majority label.

    Splitting by problem keeps the oracle from learning a problem's surface
    and scoring the same problem's other rollouts.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    uniq = sorted(set(groups))
    major = {g: labels[[i for i, x in enumerate(groups) if x == g]].mean() >= 0.5 for g in uniq}
    test_groups = set()
    for cls in (True, False):
        gs = [g for g in uniq if major[g] == cls]
        gs = [gs[i] for i in rng.permutation(len(gs))]
        test_groups |= set(gs[: int(round(test_frac * len(gs)))])
    train = np.array([g not in test_groups for g in groups])
    for name, m in (("train", train), ("test", ~train)):
        if len(set(labels[m].tolist())) < 2:
            raise ValueError(
                f"split_by_group: the {name} split lacks a class "
                f"({int(labels[m].sum())} hack of {int(m.sum())}); need more problems"
            )
    return train


def _directions_for(
    source,
    feats,
    train_mask: np.ndarray,
    labels: np.ndarray,
    sites,
    model,
    tokenizer,
    seed: int,
    **capture_kw,
) -> dict[str, torch.Tensor]:
    """One source -> direction per site.

    "oracle", "haar", a pair list (mean paired difference), ("t", pairs) for
    the t-statistic variant, or a ready {site: direction} dict.
    """
    if isinstance(source, str) and source == "oracle":
        hidden = np.where(train_mask, labels, -1)  # test labels never leave this function
        return {s: oracle_direction(feats[s], hidden, train_mask) for s in sites}
    if isinstance(source, str) and source == "haar":
        return {s: haar_direction(feats[s].shape[1:], seed, feats.widths[s]) for s in sites}
    if isinstance(source, Mapping):
        missing = [s for s in sites if s not in source]
        if missing:
            raise ValueError(f"routing_table: the given directions lack sites {missing}")
        return {s: torch.as_tensor(source[s]) for s in sites}
    if isinstance(source, str):
        raise ValueError(
            f"routing_table: unknown source {source!r} (use 'oracle', 'haar', "
            "pairs, ('t', pairs) or a dict of directions)"
        )
    method = "mean"
    if isinstance(source, tuple) and len(source) == 2 and source[0] == "t":
        method, source = "t", source[1]
    return extract_directions(model, tokenizer, list(source), sites, method=method, **capture_kw)


def _table_row(sc, y, groups, f05, ceiling, bands, n_boot, seed) -> dict:
    """One (site, source) row: metrics, cluster-bootstrap CIs, band and verdicts."""
    a_lo, a_hi = bootstrap_ci(auroc, sc, y, groups=groups, n=n_boot, seed=seed)
    f_lo, f_hi = bootstrap_ci(f05, sc, y, groups=groups, n=n_boot, seed=seed)
    band_f, band_a = bands
    value_f, value_a = f05(sc, y), auroc(sc, y)
    return dict(
        auroc=value_a,
        auroc_lo=a_lo,
        auroc_hi=a_hi,
        f05=value_f,
        f05_lo=f_lo,
        f05_hi=f_hi,
        f05_ceiling=ceiling,
        band_median=band_f["median"],
        band_p95=band_f["p95"],
        f05_verdict=band_verdict(value_f, band_f["p95"], ceiling, y.size),
        band_auroc_median=band_a["median"],
        band_auroc_p95=band_a["p95"],
        auroc_verdict=band_verdict(value_a, band_a["p95"], 1.0, y.size),
    )


def routing_table(
    model,
    tokenizer,
    pool: LabelledPool,
    direction_sources: Mapping[str, object],
    sites: Sequence[str] = SITES,
    q: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
    test_frac: float = 0.5,
    n_band: int = 200,
    block: str = "deployed",
    batch_size: int = 16,
    max_completion_tokens: int | None = None,
    hack_share: float | None = None,
):
    """DataFrame, one row per (site, source), all scored on the held-out split.

    Columns: auroc (+ _lo/_hi 95% CI), f05 = F0.5 with exactly the top q
    routed (+ CI), f05_ceiling = the best F0.5 any score reaches on these
    labels, band_median / band_p95 = F0.5 of n_band Haar-random directions
    (band_auroc_* likewise for AUROC), f05_verdict / auroc_verdict = "beats
    band", "does not beat band" or "cannot discriminate" (the ceiling is at
    the band's p95: no direction could beat it), hack_share = the share F0.5
    is evaluated at (the held-out split's own unless given), n_hack / n_clean on the held-out split, n_problems there,
    n_train. CIs resample held-out problems (`bootstrap_ci` with the pool's
    groups). hack_share: compute F0.5 (its band and ceiling) as if hacks
    were that share of rollouts (see `f_beta_at_quantile`).
    """
    import pandas as pd

    kw = dict(block=block, batch_size=batch_size, max_completion_tokens=max_completion_tokens)
    feats = capture_texts(model, tokenizer, pool.prompts, pool.completions, sites, **kw)
    train = split_by_group(pool.groups, pool.labels, test_frac, seed)
    y_test = pool.labels[~train]
    g_test = np.asarray(pool.groups)[~train]
    f05 = functools.partial(f_beta_at_quantile, q=q, beta=0.5, hack_share=hack_share)
    ceiling = f_beta_ceiling(y_test, q=q, beta=0.5, hack_share=hack_share)
    share = float(y_test.mean()) if hack_share is None else float(hack_share)
    bands = {}
    for s in sites:
        x = feats[s][torch.as_tensor(~train)].numpy()
        bands[s] = (
            random_band(x, y_test, n_band, seed, f05, feats.widths[s]),
            random_band(x, y_test, n_band, seed, auroc, feats.widths[s]),
        )
    rows = []
    for name, source in direction_sources.items():
        dirs = _directions_for(
            source, feats, train, pool.labels, sites, model, tokenizer, seed, **kw
        )
        for s in sites:
            sc = score(feats[s][torch.as_tensor(~train)], dirs[s]).numpy()
            row = _table_row(sc, y_test, g_test, f05, ceiling, bands[s], n_boot, seed)
            rows.append(
                dict(site=s, source=name, **row, hack_share=share)
                | dict(n_hack=int(y_test.sum()), n_clean=int((1 - y_test).sum()))
                | dict(n_problems=len(set(g_test)), n_train=int(train.sum()))
            )
    return pd.DataFrame(rows)


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
            temperature=args.temperature,
            seed=args.seed,
        )
    if args.pool == "reference":
        return reference_pool(max_per_class=args.max_per_class, seed=args.seed)
    if args.pool == "rendered":
        return rendered_pool(args.problems).without_problems(fit)
    return labelled_pool_from_jsonl(args.pool).without_problems(fit)


def _sources(args, model, tokenizer, fit: Sequence[str] = ()) -> dict:
    from vgrout.env.pairs import load_pairs

    sources = {}
    for name, spec in (("authored", args.pairs), ("placebo", args.placebo)):
        if spec:
            sources[name] = load_pairs(spec)
    if args.pairs and args.t_stat:
        sources["authored_t"] = ("t", sources["authored"])
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
            temperature=args.temperature,
            seed=args.seed,
        )
        print(f"self-generated pairs: {len(pairs)} of {len(problems)} problems")
        if pairs:
            sources["self"] = pairs
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
        table = routing_table(
            model,
            tokenizer,
            pool,
            sources,
            args.sites.split(","),
            q=args.q,
            n_boot=args.n_boot,
            seed=args.seed,
            n_band=args.n_band,
            max_completion_tokens=args.max_completion_tokens,
            hack_share=args.hack_share,
        )
    out = Path(args.out)
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    meta = dict(
        command="python -m vgrout.directions.diagnostics "
        + " ".join(sys.argv[1:] if argv is None else argv),
        settings=vars(args),
        n_hack=pool.counts()[0],
        n_clean=pool.counts()[1],
        n_pairs={k: len(v) for k, v in sources.items() if isinstance(v, list)},
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
