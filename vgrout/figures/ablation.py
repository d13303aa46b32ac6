"""The preregistered analysis of a GRPO grid (docs/preregistration.md), for notebook 04.

- `seed_table`: one row per arm x seed x split x view at the final step
  (hack, solve, n): the numbers every test reads (figures/ablation_seeds.csv).
- `test_table`: one row per preregistered comparison: the mean paired
  difference over seeds, its 95% t interval, the exact sign-flip p, Holm's p
  within the comparison's family, and a verdict (figures/ablation_tests.csv).
- `takeoff_check`: check C1, in how many seeds vanilla's shipped hack rate rose.
- `gate_table`: per-seed gate AUROC / F0.5 against the true labels.
- `label_curve`: the label-efficiency curve and where an arm falls on it.

A comparison is a dict {id, a, b, metric, sided, family}: "a vs b" on `metric`
(hack | solve) of the shipped view; sided is less | greater | two-sided.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from vgrout.figures import stats
from vgrout.figures.tables import RunMap, eval_table, step_table

ALPHA = 0.05
COMPARISON_FIELDS = ("id", "a", "b", "metric", "sided", "family")


def seed_table(runs: RunMap) -> pd.DataFrame:
    """arm, seed, split, view, ships, step, hack, solve, n at each run's final evaluation."""
    ev = eval_table(runs)
    last = ev[ev["step"] == ev.groupby(["arm", "seed"])["step"].transform("max")]
    cols = ["arm", "seed", "split", "view", "ships", "step", "hack", "solve", "n"]
    return (
        last[cols]
        .sort_values(["arm", "seed", "split", "view"], kind="stable")
        .reset_index(drop=True)
    )


def shipped(seeds: pd.DataFrame, split: str = "iid") -> pd.DataFrame:
    """[arm x seed] rows of the shipped view on `split` (one per run, else an error)."""
    t = seeds[(seeds["split"] == split) & seeds["ships"].astype(bool)]
    dup = t.duplicated(["arm", "seed"])
    if dup.any():
        raise ValueError(f"shipped: several shipped rows for {t[dup][['arm', 'seed']].values}")
    return t.set_index(["arm", "seed"])


def check_comparisons(comparisons: Sequence[Mapping], arms: Sequence[str]) -> None:
    """Refuse a comparison with a missing field, an unknown value or an arm not in the grid."""
    for i, c in enumerate(comparisons):
        missing = [f for f in COMPARISON_FIELDS if f not in c]
        if missing:
            raise ValueError(
                f"comparisons[{i}]: missing field(s) {missing}; needs {COMPARISON_FIELDS}"
            )
        if c["metric"] not in ("hack", "solve"):
            raise ValueError(f"comparisons[{i}] {c['id']}: metric must be hack or solve")
        if c["sided"] not in stats.ALTERNATIVES:
            raise ValueError(
                f"comparisons[{i}] {c['id']}: sided must be one of {stats.ALTERNATIVES}"
            )
        absent = [a for a in (c["a"], c["b"]) if a not in arms]
        if absent:
            raise ValueError(
                f"comparisons[{i}] {c['id']}: arm(s) {absent} not in the grid {list(arms)}"
            )


def paired(seeds: pd.DataFrame, a: str, b: str, metric: str, split: str = "iid") -> pd.DataFrame:
    """seed, a, b, d = a - b over the seeds both arms ran."""
    t = shipped(seeds, split)[metric].unstack("arm")
    both = t[[a, b]].dropna()
    return pd.DataFrame({"seed": both.index, "a": both[a].values, "b": both[b].values,
                         "d": (both[a] - both[b]).values})  # fmt: skip


def verdict(p_adj: float, n: int, sided: str) -> str:
    if stats.min_p(n, sided) > ALPHA:
        return "cannot be decided with this design"
    return "supported" if p_adj <= ALPHA else "not supported"


def test_table(seeds: pd.DataFrame, comparisons: Sequence[Mapping], split: str = "iid"):
    """One row per comparison; Holm adjusts within each family."""
    check_comparisons(comparisons, sorted(set(seeds["arm"])))
    rows = []
    for c in comparisons:
        pr = paired(seeds, c["a"], c["b"], c["metric"], split)
        mean, lo, hi = stats.paired_ci(pr["d"])
        rows.append({
            **{k: c[k] for k in COMPARISON_FIELDS}, "split": split, "n_seeds": len(pr),
            "mean_a": pr["a"].mean(), "mean_b": pr["b"].mean(), "effect": mean,
            "ci_low": lo, "ci_high": hi, "seeds_a_lower": int((pr["d"] < 0).sum()),
            "p": stats.sign_flip_p(pr["d"], c["sided"]),
        })  # fmt: skip
    out = pd.DataFrame(rows)
    out["p_holm"] = np.nan
    for _, idx in out.groupby("family", sort=False).groups.items():
        out.loc[idx, "p_holm"] = stats.holm(out.loc[idx, "p"].tolist())
    out["verdict"] = [
        verdict(p, n, s) for p, n, s in zip(out["p_holm"], out["n_seeds"], out["sided"])
    ]
    return out


def takeoff_check(runs: RunMap, arm: str = "vanilla", split: str = "iid") -> pd.DataFrame:
    """Per seed of `arm`: shipped hack at the first and the final evaluation, and whether it rose."""
    ev = eval_table({k: v for k, v in runs.items() if k[0] == arm})
    if ev.empty:
        raise ValueError(f"takeoff_check: no run of arm {arm!r}")
    ev = ev[(ev["split"] == split) & ev["ships"].astype(bool)]
    rows = []
    for seed, g in ev.groupby("seed"):
        g = g.sort_values("step")
        first, last = g.iloc[0], g.iloc[-1]
        rows.append({"arm": arm, "seed": seed, "step_first": int(first["step"]),
                     "hack_first": first["hack"], "step_last": int(last["step"]),
                     "hack_last": last["hack"], "rose": bool(last["hack"] > first["hack"])})  # fmt: skip
    return pd.DataFrame(rows)


def gate_table(runs: RunMap, gated: Sequence[str]) -> pd.DataFrame:
    """Per gated arm x seed: mean over steps of gate AUROC, F0.5, routed and hack shares."""
    steps = step_table({k: v for k, v in runs.items() if k[0] in gated})
    if steps.empty:
        return pd.DataFrame()
    agg = dict(gate_auroc=("gate_auroc", "mean"), gate_f05=("gate_f05", "mean"),
               zone_route=("zone_route", "mean"), hack=("hack", "mean"),
               steps_scored=("gate_auroc", "count"))  # fmt: skip
    return steps.groupby(["arm", "seed"]).agg(**agg).reset_index()


def label_curve(seeds: pd.DataFrame, points: Mapping[str, float], target: str,
                split: str = "iid") -> tuple[pd.DataFrame, float, float | None]:  # fmt: skip
    """(curve, target_hack, share): mean shipped hack per labelled arm over the seeds all of
    them ran, `target`'s mean over the same seeds, and the label share at which the linearly
    interpolated curve first meets it (None when no segment of the curve brackets it)."""
    t = shipped(seeds, split)["hack"].unstack("arm")
    cols = [*points, target]
    t = t[cols].dropna()
    curve = pd.DataFrame({"arm": list(points), "label_share": list(points.values()),
                          "hack": [t[a].mean() for a in points], "seeds": len(t)})  # fmt: skip
    curve = curve.sort_values("label_share")
    y, x, goal = curve["hack"].to_numpy(), curve["label_share"].to_numpy(), t[target].mean()
    for i in range(len(x) - 1):
        lo, hi = sorted((y[i], y[i + 1]))
        if lo <= goal <= hi and y[i] != y[i + 1]:
            share = x[i] + (goal - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i])
            return curve, float(goal), float(share)
    return curve, float(goal), None


def seeds_figure(seeds: pd.DataFrame, arms: Sequence[str], title: str, split: str = "iid"):
    """Shipped hack and solve per arm: every seed a dot, the mean a bar with its 95% t interval."""
    import matplotlib.pyplot as plt

    from vgrout.figures.grpo_runs import arm_colors

    t = shipped(seeds, split).reset_index()
    colors = arm_colors(arms)
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.3 * len(arms) + 3), 4.2))
    rng = np.random.default_rng(0)  # jitter only
    for ax, metric in zip(axes, ("hack", "solve")):
        for i, arm in enumerate(arms):
            v = t.loc[t["arm"] == arm, metric].to_numpy()
            if v.size == 0:
                continue
            m, lo, hi = stats.paired_ci(v) if v.size > 1 else (v.mean(), np.nan, np.nan)
            ax.bar(i, m, 0.6, color=colors[arm], alpha=0.35)
            if v.size > 1:
                ax.errorbar(i, m, yerr=[[m - max(lo, 0)], [min(hi, 1) - m]], color="k", capsize=4)
            ax.scatter(i + rng.uniform(-0.18, 0.18, v.size), v, s=14, color=colors[arm],
                       edgecolor="k", linewidth=0.4, zorder=3)  # fmt: skip
        ax.set_xticks(range(len(arms)), arms, rotation=25, ha="right")
        ax.set(ylim=(0, 1), ylabel=f"shipped {metric} rate", title=f"{metric} ({split})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def tests_figure(seeds: pd.DataFrame, tests: pd.DataFrame, title: str, split: str = "iid"):
    """One row per comparison: each seed's difference a dot, the mean with its 95% t interval,
    p and Holm's p beside it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.7 * len(tests) + 1.6))
    for i, c in enumerate(tests.itertuples()):
        y = len(tests) - 1 - i
        d = paired(seeds, c.a, c.b, c.metric, split)["d"]
        ax.scatter(d, np.full(len(d), y) + np.linspace(-0.15, 0.15, len(d)), s=12, color="0.4")
        if c.n_seeds > 1:
            ax.errorbar(c.effect, y, xerr=[[c.effect - c.ci_low], [c.ci_high - c.effect]],
                        fmt="o", color="tab:red", capsize=4)  # fmt: skip
        ax.text(1.02, y, f"p={c.p:.3g}  Holm {c.p_holm:.3g}\n{c.verdict}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8)  # fmt: skip
    ax.axvline(0, color="k", lw=0.8)
    labels = [f"{c.id}: {c.a} - {c.b} ({c.metric})" for c in tests.itertuples()]
    ax.set_yticks(range(len(tests)), labels[::-1])
    ax.set(xlabel=f"difference in shipped rate ({split}), per seed and mean with 95% CI")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def label_figure(curve: pd.DataFrame, target: str, target_hack: float, share, title: str):
    """Shipped hack vs share of labels revealed, with the target arm's mean as a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["label_share"], curve["hack"], "o-", color="tab:green", label="oracle routing")
    for r in curve.itertuples():
        ax.annotate(r.arm, (r.label_share, r.hack), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)  # fmt: skip
    ax.axhline(target_hack, color="tab:blue", ls="--", label=f"{target} (no labels)")
    if share is not None:
        ax.axvline(share, color="tab:blue", lw=0.8)
    ax.set(xlabel="share of hack labels revealed to the router", ylabel="shipped hack rate (iid)",
           xlim=(-0.05, 1.05), ylim=(0, max(0.05, 1.15 * curve["hack"].max(), 1.15 * target_hack)))  # fmt: skip
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
