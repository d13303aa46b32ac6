"""The preregistered analysis of a GRPO grid (docs/preregistration.md), for notebook 04.

- `seed_table`: one row per arm x seed x split x view at the final step
  (hack, solve, n): the numbers every test reads (figures/ablation_seeds.csv).
- `test_table`: one row per preregistered comparison: the mean paired
  difference over seeds, its 95% t interval, the exact sign-flip p, Holm's p
  within the comparison's family, and a verdict (figures/ablation_tests.csv).
- `takeoff_check`: check C1, in how many seeds vanilla's shipped hack rate rose.
- `gate_table`: per-seed gate AUROC / F0.5 against the true labels.
- `label_curve`: the label-efficiency curve and where an arm falls on it;
  `label_share_interval` its bootstrap interval over seeds.
- `seeds_figure`, `tests_figure`: every seed keeps one marker in every arm.

A comparison is a dict {id, a, b, metric, sided, family[, margin]}: "a vs b" on
`metric` (hack | solve) of the shipped view; sided is less | greater |
two-sided; with a margin the comparison also gets two one-sided equivalence
tests and ends "lower", "equivalent within +-margin" or "undecided".
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from vgrout.figures import stats, style
from vgrout.figures.grid import Grid

ALPHA = 0.05
COMPARISON_FIELDS = ("id", "a", "b", "metric", "sided", "family")
"""Every comparison has these; `margin` (an equivalence margin, set in advance) is optional."""


def seed_table(evals: pd.DataFrame) -> pd.DataFrame:
    """arm, seed, split, view, ships, step, hack, solve, n at each run's final evaluation.

    evals: `Grid.evals()`.
    """
    ev = evals
    last = ev[ev["step"] == ev.groupby(["arm", "seed"])["step"].transform("max")]
    cols = ["arm", "seed", "split", "view", "ships", "step", "hack", "solve", "n"]
    return (
        last[cols]
        .sort_values(["arm", "seed", "split", "view"], kind="stable")
        .reset_index(drop=True)
    )


def grid_seeds(grid: Grid) -> pd.DataFrame:
    """The grid's seed table: computed from its evaluations, or the one it stored."""
    return grid.table("ablation_seeds", lambda: seed_table(grid.evals()))


def shipped(seeds: pd.DataFrame, split: str = "iid") -> pd.DataFrame:
    """[arm x seed] rows of the shipped view on `split` (one per run, else an error)."""
    t = seeds[(seeds["split"] == split) & seeds["ships"].astype(bool)]
    dup = t.duplicated(["arm", "seed"])
    if dup.any():
        raise ValueError(f"shipped: several shipped rows for {t[dup][['arm', 'seed']].values}")
    return t.set_index(["arm", "seed"])


def pool_seeds(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Seed tables of grids run with the same configuration, as one table over all their seeds.

    A run that two grids share (the secondary grid read back the primary's
    runs) appears once; two different rows for one (arm, seed, split, view)
    are refused, since they would be two runs claiming the same seed.
    """
    both = pd.concat(tables, ignore_index=True).drop_duplicates()
    key = ["arm", "seed", "split", "view"]
    clash = both[both.duplicated(key, keep=False)]
    if not clash.empty:
        raise ValueError(f"pool_seeds: different rows for the same run:\n{clash}")
    return both.sort_values(key, kind="stable").reset_index(drop=True)


def comparisons_within(comparisons: Sequence[Mapping], arms: Sequence[str]) -> list[Mapping]:
    """The comparisons whose two arms are both in `arms`."""
    return [c for c in comparisons if c["a"] in arms and c["b"] in arms]


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
        if "margin" in c and not (isinstance(c["margin"], (int, float)) and c["margin"] > 0):
            raise ValueError(f"comparisons[{i}] {c['id']}: margin must be a number > 0")
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
    """What a test decides, in words that do not claim more than it can.

    A one-sided test of a hypothesis ends "supported" or "not supported"; a
    two-sided comparison (a cost, a window) has no hypothesised direction, so it
    ends "differs" or "no difference shown", never "not supported". Neither
    failure is evidence of no effect: that needs an equivalence margin.
    """
    if stats.min_p(n, sided) > ALPHA:
        return "cannot be decided with this design"
    if sided == "two-sided":
        return "differs" if p_adj <= ALPHA else "no difference shown"
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
    out["p_holm"] = _holm_by_family(out, "p")
    out["verdict"] = [
        verdict(p, n, s) for p, n, s in zip(out["p_holm"], out["n_seeds"], out["sided"])
    ]
    if any("margin" in c for c in comparisons):
        _equivalence(out, seeds, comparisons, split)
    return out


def _holm_by_family(out: pd.DataFrame, column: str) -> pd.Series:
    adjusted = pd.Series(np.nan, index=out.index)
    for _, idx in out.groupby("family", sort=False).groups.items():
        ok = [i for i in idx if pd.notna(out.loc[i, column])]
        adjusted[ok] = stats.holm(out.loc[ok, column].tolist())
    return adjusted


def _equivalence(out: pd.DataFrame, seeds, comparisons, split) -> None:
    """Margin, TOST p (Holm within each family) and the three-way verdict, in place.

    A comparison with a margin ends "lower" / "higher" / "differs" when its
    test rejects, "equivalent within +-margin" when the TOST does, and
    "undecided" otherwise; one without a margin keeps its two-way verdict.
    """
    out["margin"] = [c.get("margin", np.nan) for c in comparisons]
    out["p_equiv"] = [
        stats.equivalence_p(paired(seeds, c["a"], c["b"], c["metric"], split)["d"], c["margin"])
        if "margin" in c else np.nan
        for c in comparisons
    ]  # fmt: skip
    out["p_equiv_holm"] = _holm_by_family(out, "p_equiv")
    for i, r in out.iterrows():
        if pd.isna(r["margin"]) or r["verdict"] == "cannot be decided with this design":
            continue
        if r["p_holm"] <= ALPHA:
            out.loc[i, "verdict"] = DIRECTION_WORDS[r["sided"]]
        elif r["p_equiv_holm"] <= ALPHA:
            out.loc[i, "verdict"] = f"equivalent within +-{r['margin']:g}"
        else:
            out.loc[i, "verdict"] = "undecided"


DIRECTION_WORDS = {"less": "lower", "greater": "higher", "two-sided": "differs"}


def takeoff_check(evals: pd.DataFrame, arm: str = "vanilla", split: str = "iid") -> pd.DataFrame:
    """Per seed of `arm`: shipped hack at the first and the final evaluation, and whether it rose.

    evals: `Grid.evals()`.
    """
    ev = evals[evals["arm"] == arm]
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


def gate_table(steps: pd.DataFrame, gated: Sequence[str]) -> pd.DataFrame:
    """Per gated arm x seed: mean over steps of gate AUROC, F0.5, routed and hack shares.

    steps: `Grid.steps()`; gated: `Grid.gated_arms()`.
    """
    steps = steps[steps["arm"].isin(list(gated))]
    if steps.empty:
        return pd.DataFrame()
    agg = dict(gate_auroc=("gate_auroc", "mean"), gate_f05=("gate_f05", "mean"),
               zone_route=("zone_route", "mean"), hack=("hack", "mean"),
               steps_scored=("gate_auroc", "count"))  # fmt: skip
    return steps.groupby(["arm", "seed"]).agg(**agg).reset_index()


def count_check(steps: pd.DataFrame, configs: Mapping[tuple[str, int], Mapping]) -> pd.DataFrame:
    """Per count-matched run (`gate_count`): did its gate flag the planned number every step?

    The planned number is round(gate_q x prompts_per_step x group_size), or every
    live rollout at a step with fewer. A direction and its Haar placebo compare
    which rollouts they flag only while both flag as many (check C3 of
    preregistration 2); a step off the count would compare volumes again.
    steps: `Grid.steps()`; configs: each run's config by (arm, seed). Empty when
    no run is count-matched.
    """
    rows = []
    for (arm, seed), c in configs.items():
        if not c.get("gate_count"):
            continue
        s = steps[(steps["arm"] == arm) & (steps["seed"] == seed)]
        live = s["live_groups"] * c["group_size"]  # live rollouts a step
        target = round(c["gate_q"] * c["prompts_per_step"] * c["group_size"])
        flagged = (s["flagged"] * live).round()  # flagged is a share of the live rollouts
        rows.append(dict(arm=arm, seed=seed, target=target, steps=len(s),
                         steps_fewer_live=int((live < target).sum()),
                         steps_off_count=int((flagged != np.minimum(live, target)).sum()),
                         flagged=float(s["flagged"].mean()), hack=float(s["hack"].mean())))  # fmt: skip
    return pd.DataFrame(rows)


def label_curve(seeds: pd.DataFrame, points: Mapping[str, float], target: str,
                split: str = "iid") -> tuple[pd.DataFrame, float, float | None]:  # fmt: skip
    """(curve, target_hack, share): mean shipped hack per labelled arm over the seeds all of
    them ran, `target`'s mean over the same seeds, and the label share at which the linearly
    interpolated curve first meets it (None when no segment of the curve brackets it)."""
    t = _label_frame(seeds, points, target, split)
    curve = pd.DataFrame({"arm": list(points), "label_share": list(points.values()),
                          "hack": [t[a].mean() for a in points], "seeds": len(t)})  # fmt: skip
    curve = curve.sort_values("label_share")
    goal = float(t[target].mean())
    return curve, goal, crossing(curve["label_share"].to_numpy(), curve["hack"].to_numpy(), goal)


def _label_frame(seeds, points, target, split) -> pd.DataFrame:
    """[seed x arm] shipped hack of the labelled arms and the target, seeds all of them ran."""
    return shipped(seeds, split)["hack"].unstack("arm")[[*points, target]].dropna()


def crossing(x: np.ndarray, y: np.ndarray, goal: float) -> float | None:
    """First x at which the piecewise-linear curve (x, y) equals `goal`; None if it never does."""
    for i in range(len(x) - 1):
        lo, hi = sorted((y[i], y[i + 1]))
        if lo <= goal <= hi and y[i] != y[i + 1]:
            return float(x[i] + (goal - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i]))
    return None


def label_share_interval(seeds: pd.DataFrame, points: Mapping[str, float], target: str,
                         split: str = "iid", n_boot: int = 2000,
                         seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Where `target` falls on the label curve, with two 95% intervals over seeds.

    - t: the paired t interval of target minus the curve's no-label arm (the
      arm at the smallest label share), mapped through the mean curve. Honest
      with few seeds (a t quantile), but it holds the curve fixed.
    - bootstrap: seeds resampled with replacement, the same seeds for every arm
      (the arms are paired by seed), each resample's curve and target mean
      giving a share. It carries the curve's noise too, but with few seeds it
      is too narrow: 4 seeds allow only 35 distinct resamples.

    A share is clipped to the curve's ends when the target lies outside it (no
    better than the curve's worst point, or better than its best), so a wide
    interval shows as wide instead of as missing. One row: target, share (None
    outside the curve), t_low, t_high, boot_low, boot_high, seeds, n_boot.
    """
    t = _label_frame(seeds, points, target, split)
    order = sorted(points, key=lambda a: points[a])
    x = np.array([points[a] for a in order])
    vals, goal = t[order].to_numpy(), t[target].to_numpy()  # [seeds, points], [seeds]
    rng = np.random.default_rng(seed)
    shares = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(t), len(t))
        shares.append(_clipped_share(x, vals[pick].mean(axis=0), goal[pick].mean()))
    mean_curve = vals.mean(axis=0)
    _, lo, hi = stats.paired_ci(goal - vals[:, 0])
    ends = sorted(_clipped_share(x, mean_curve, vals[:, 0].mean() + d) for d in (lo, hi))
    boot = np.percentile(shares, [2.5, 97.5])
    return pd.DataFrame([{
        "target": target, "share": crossing(x, mean_curve, float(goal.mean())),
        "t_low": ends[0], "t_high": ends[1], "boot_low": float(boot[0]),
        "boot_high": float(boot[1]), "seeds": len(t), "n_boot": n_boot,
    }])  # fmt: skip


def _clipped_share(x: np.ndarray, y: np.ndarray, goal: float) -> float:
    """`crossing`, or the curve's end nearest `goal` when the curve never reaches it."""
    hit = crossing(x, y, goal)
    if hit is not None:
        return hit
    worst, best = (x[0], x[-1]) if y[0] >= y[-1] else (x[-1], x[0])
    return float(worst if goal >= y.max() else best)


SEED_SHAPES = ("o", "s", "^", "v", "D", "P", "X", "*")
"""Marker shapes that stay distinct at scatter size (hexagons and octagons read as
circles, and line markers vanish without a face)."""


def seed_markers(seeds: Sequence[int]) -> dict[int, dict]:
    """{seed: scatter style}, the same in every arm: the k-th seed of the grid takes the
    k-th shape, hollow for the first eight seeds and filled for the next eight, so 16
    seeds are told apart; past 16 they repeat in order (a legend says which)."""
    out = {}
    for i, s in enumerate(sorted(seeds)):
        filled = (i // len(SEED_SHAPES)) % 2 == 1
        out[s] = dict(marker=SEED_SHAPES[i % len(SEED_SHAPES)],
                      facecolor="0.35" if filled else "white")  # fmt: skip
    return out


def seeds_figure(seeds: pd.DataFrame, arms: Sequence[str], title: str, split: str = "iid"):
    """Shipped hack and solve per arm: the mean a bar with its 95% t interval, every seed a point.

    A seed keeps its marker and its horizontal offset in every arm, and a faint
    line joins its points, so a comparison's pairs, and a seed that drives a
    mean, can be read off the figure.
    """
    import matplotlib.pyplot as plt

    arms = list(arms)
    t = shipped(seeds, split).reset_index()
    colors = style.arm_colors(arms)
    order = sorted(set(t["seed"]))
    markers = seed_markers(order)
    offset = dict(zip(order, np.linspace(-0.22, 0.22, len(order)) if len(order) > 1 else [0.0]))
    if len(arms) > style.SIDE_BY_SIDE_ARMS:
        fig, axes = plt.subplots(2, 1, figsize=(0.8 * len(arms) + 3, 9.0))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.3 * len(arms) + 4), 4.4))
    for ax, metric in zip(axes, ("hack", "solve")):
        for i, arm in enumerate(arms):
            v = t.loc[t["arm"] == arm, metric].to_numpy()
            if v.size == 0:
                continue
            m, lo, hi = stats.paired_ci(v) if v.size > 1 else (v.mean(), np.nan, np.nan)
            ax.bar(i, m, 0.6, color=colors[arm], alpha=0.35)
            if v.size > 1:
                ax.errorbar(i, m, yerr=[[m - max(lo, 0)], [min(hi, 1) - m]], color="k", capsize=4)
        wide = t.pivot(index="seed", columns="arm", values=metric)
        wide = wide[[a for a in arms if a in wide.columns]]
        for s, row in wide.iterrows():
            xs = [arms.index(a) + offset[s] for a in row.index]
            ax.plot(xs, row.to_numpy(), color="0.5", lw=0.5, alpha=0.35, zorder=2)
            ax.scatter(xs, row.to_numpy(), s=22, **markers[s], edgecolor="k", linewidth=0.7,
                       zorder=3, label=f"seed {s}")  # fmt: skip
        ax.set_xticks(range(len(arms)), arms, rotation=25, ha="right")
        ax.set(ylim=(0, 1), ylabel=f"shipped {metric} rate", title=f"{metric} ({split})")
    fig.suptitle(title)
    handles, labels = axes[0].get_legend_handles_labels()
    style.legend_below(fig, handles, labels, ncol=min(len(labels), 8))
    return fig


def tests_figure(seeds: pd.DataFrame, tests: pd.DataFrame, title: str, split: str = "iid"):
    """One row per comparison: each seed's difference (its marker as in `seeds_figure`), the
    mean with its 95% t interval, p and Holm's p beside it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.7 * len(tests) + 1.6))
    markers = seed_markers(sorted(set(seeds["seed"])))
    for i, c in enumerate(tests.itertuples()):
        y = len(tests) - 1 - i
        pr = paired(seeds, c.a, c.b, c.metric, split)
        for s, d, dy in zip(pr["seed"], pr["d"], np.linspace(-0.15, 0.15, len(pr))):
            ax.scatter(d, y + dy, s=16, **markers[s], edgecolor="0.3", linewidth=0.6,
                       label=f"seed {s}" if i == 0 else None)  # fmt: skip
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
    handles, names = ax.get_legend_handles_labels()
    style.legend_below(fig, handles, names, ncol=min(len(names), 8))
    return fig


def label_figure(curve: pd.DataFrame, target: str, target_hack: float, interval: pd.DataFrame,
                 title: str):  # fmt: skip
    """Shipped hack vs share of labels revealed, the target arm's mean as a line, and the
    intervals of where it meets the curve (`label_share_interval`) as bands."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["label_share"], curve["hack"], "o-", color="tab:green", label="oracle routing")
    for r in curve.itertuples():
        ax.annotate(r.arm, (r.label_share, r.hack), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)  # fmt: skip
    ax.axhline(target_hack, color="tab:blue", ls="--", label=f"{target} (no labels)")
    iv = interval.iloc[0]
    ax.axvspan(iv["t_low"], iv["t_high"], color="tab:blue", alpha=0.10,
               label="95% t interval over seeds")  # fmt: skip
    ax.axvspan(iv["boot_low"], iv["boot_high"], color="tab:blue", alpha=0.18,
               label="95% bootstrap interval over seeds")  # fmt: skip
    if pd.notna(iv["share"]):
        ax.axvline(iv["share"], color="tab:blue", lw=0.8)
    ax.set(xlabel="share of hack labels revealed to the router", ylabel="shipped hack rate (iid)",
           xlim=(-0.05, 1.05), ylim=(0, max(0.05, 1.15 * curve["hack"].max(), 1.15 * target_hack)))  # fmt: skip
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def label_title(interval: pd.DataFrame) -> str:
    """The label curve's title: the share with its interval, never a bare point estimate."""
    iv = interval.iloc[0]
    where = "outside the curve" if pd.isna(iv["share"]) else f"at {iv['share']:.0%} of labels"
    return (
        f"Label efficiency over {iv['seeds']} seeds: {iv['target']} meets the oracle curve "
        f"{where}\n95% intervals over seeds: t {iv['t_low']:.0%} to {iv['t_high']:.0%}, "
        f"bootstrap {iv['boot_low']:.0%} to {iv['boot_high']:.0%}"
    )
