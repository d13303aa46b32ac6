"""Tables and figures of GRPO run grids, for notebooks 03 (training) and 04 (ablation).

Every number comes from run folders through `vgrout.figures.tables`, so a figure and
the csv saved beside it cannot disagree. Runs are laid out as
``<runs_dir>/<arm name>/s<seed>`` (what `vgrout.grpo.sweep.run_grid` writes); 04
finds them there, so the two notebooks share files, never kernel state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from vgrout.figures.tables import RunMap, ci95
from vgrout.names import GATED_ARMS
from vgrout.paths import repo_path

SPLIT_TITLES = {
    "iid": "training problems (training markers)",
    "test": "held-out problems (evaluation markers)",
}
VIEW_LABELS = {"trained": "as trained (whole model)", "deployed": "deployed (quarantine deleted)"}


# ---------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------


def discover_runs(
    runs_dir: str | Path, arms: Sequence[str] = (), seeds: Sequence[int] = ()
) -> dict:
    """{(arm, seed): run folder} for ``<runs_dir>/<arm>/s<seed>``, finished runs only.

    arms, seeds: what to load (empty: everything found; vanilla first, then by
    name). Raises when the folder, an asked-for run, or a run's result.json is
    missing: a figure silently drawn from half the grid, or from a run that
    stopped early, would misreport the comparison it claims to show.
    """
    root = repo_path(runs_dir)
    hint = "run 03_grpo_training.ipynb first with the same runs_dir"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no runs folder; {hint}")
    found = {
        (d.parent.name, int(d.name[1:])): d
        for d in sorted(root.glob("*/s*"))
        if re.fullmatch(r"s\d+", d.name) and (d / "config.json").is_file()
    }
    if not found:
        raise FileNotFoundError(f"{root}: holds no <arm>/s<seed> run folders; {hint}")
    names = list(arms) or sorted({a for a, _ in found}, key=lambda a: (a != "vanilla", a))
    wanted = list(seeds) or sorted({s for _, s in found})
    runs = {}
    for arm in names:
        for seed in wanted:
            path = found.get((arm, int(seed)))
            if path is None:
                raise FileNotFoundError(
                    f"{root / arm / f's{seed}'}: run missing (found {sorted(found)}); {hint}"
                )
            if not (path / "result.json").is_file():
                raise RuntimeError(
                    f"{path}: run unfinished (no result.json); re-run 03, it resumes"
                )
            runs[(arm, int(seed))] = path
    return runs


def gated_arms(runs: RunMap) -> list[str]:
    """Arm names whose runs route by a score gate (routeA/routeV, placebo included)."""
    from vgrout.grpo.rundir import load_run

    return list(
        dict.fromkeys(a for (a, _), p in runs.items() if load_run(p).config.arm in GATED_ARMS)
    )


def arm_colors(arms: Sequence[str]) -> dict:
    """One colour per arm, the same in every figure; vanilla is dark grey (the baseline)."""
    import seaborn as sns

    others = [a for a in dict.fromkeys(arms) if a != "vanilla"]
    colors = dict(zip(others, sns.color_palette("colorblind", max(len(others), 1))))
    return {"vanilla": (0.2, 0.2, 0.2), **colors}


def _legend_below(fig, handles, labels, ncol: int, title: str | None = None) -> None:
    """Lay out the panels, then put the legend in a band below them sized to its rows,
    so that it never covers an axis label however many arms there are."""
    rows = -(-len(labels) // ncol) + (1 if title else 0)
    fig.tight_layout(rect=(0, (0.12 + 0.28 * rows) / fig.get_figheight(), 1, 1))
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=ncol,
        frameon=False,
        title=title,
        bbox_to_anchor=(0.5, 0),
    )


# ---------------------------------------------------------------------------
# Training curves (03)
# ---------------------------------------------------------------------------


def curve_table(steps: pd.DataFrame, metrics: Sequence[str], smooth: int = 1) -> pd.DataFrame:
    """Per arm, step and metric: mean, min and max over seeds of a rolling mean.

    steps: `results.step_table` rows. Per-step rates come from one batch of
    rollouts (tens of samples) and jump around; `smooth` steps of rolling mean
    (per seed, before averaging) make the trend readable. None (e.g. a gate
    AUROC on a step without hacks) is a gap, not a zero.
    """
    missing = [m for m in metrics if m not in steps.columns]
    if missing:
        raise KeyError(
            f"curve_table: steps.jsonl rows lack {missing}; have {sorted(steps.columns)}"
        )
    rows = []
    for (arm, seed), g in steps.sort_values("step").groupby(["arm", "seed"], sort=False):
        for m in metrics:
            vals = (
                pd.to_numeric(g[m], errors="coerce")
                .rolling(max(int(smooth), 1), min_periods=1)
                .mean()
            )
            rows += [
                dict(arm=arm, seed=seed, step=s, metric=m, value=v) for s, v in zip(g["step"], vals)
            ]
    long = pd.DataFrame(rows)
    return (
        long.groupby(["arm", "metric", "step"], sort=False)["value"]
        .agg(mean="mean", lo="min", hi="max", seeds="count")
        .reset_index()
    )


def curves_figure(
    curves: pd.DataFrame,
    labels: Mapping[str, str],
    title: str,
    arms: Sequence[str] = (),
    ylabel: str | None = None,
    free_y: Sequence[str] = (),
):
    """One panel per metric (labels: {metric: panel title}), one line per arm with its seed band.

    arms: every arm of the grid, in order; it fixes each arm's colour, so a
    figure drawing a subset (the gated arms) keeps the colours of the others.
    Rates are drawn on [0, 1]; metrics in free_y (e.g. reward) autoscale.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    arms = list(arms) or list(dict.fromkeys(curves["arm"]))
    colors = arm_colors(arms)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.3 * len(labels), 3.6), squeeze=False)
    drawn = {}
    for ax, (metric, label) in zip(axes[0], labels.items()):
        for arm in arms:  # vanilla first and thickest, so arms on top of it stay visible
            c = curves[(curves["arm"] == arm) & (curves["metric"] == metric)]
            if c["mean"].notna().any():
                drawn[arm] = ax.plot(
                    c["step"],
                    c["mean"],
                    marker="o" if len(c) < 10 else None,
                    ms=4,
                    color=colors[arm],
                    lw=2.6 if arm == "vanilla" else 1.5,
                    label=arm,
                )[0]
                ax.fill_between(c["step"], c["lo"], c["hi"], color=colors[arm], alpha=0.2, lw=0)
        if not ax.lines:
            ax.text(
                0.5,
                0.5,
                "no value at any step",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
            ax.set_xlim(curves["step"].min() - 0.5, curves["step"].max() + 0.5)
        if metric not in free_y:
            ax.set_ylim(-0.02, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="training step", ylabel=ylabel or label, title=label)
        ax.title.set_fontsize(11)
    handles = [drawn[a] for a in arms if a in drawn]
    fig.suptitle(title)
    _legend_below(fig, handles, [h.get_label() for h in handles], min(len(handles), 6), title="arm")
    return fig


# ---------------------------------------------------------------------------
# As trained vs deployed (04)
# ---------------------------------------------------------------------------


def views_table(summary: pd.DataFrame, arms: Sequence[str] = ()) -> pd.DataFrame:
    """Long table: arm, split, view (trained | deployed), metric, rate, ci, seeds, step.

    summary: `results.final_summary`. "trained" is the whole model; "deployed"
    is the view that ships (the quarantine ablated on routed arms, the whole
    model on vanilla, where both rows are the same numbers).
    """
    rows = []
    for (arm, split), g in summary.groupby(["arm", "split"], sort=False):
        picks = {"trained": g[g["view"] == "trained"], "deployed": g[g["ships"].astype(bool)]}
        for view, r in picks.items():
            if len(r) != 1:
                raise ValueError(f"views_table: {arm}/{split} has {len(r)} {view} rows, expected 1")
            r = r.iloc[0]
            for m in ("hack", "solve"):
                rows.append(
                    dict(
                        arm=arm,
                        split=split,
                        view=view,
                        metric=m,
                        rate=r[m],
                        ci=r[f"{m}_ci"],
                        seeds=int(r["seeds"]),
                        step=int(r["step"]),
                    )
                )
    out = pd.DataFrame(rows)
    if arms:
        out = out.set_index("arm").loc[[a for a in arms if a in set(out["arm"])]].reset_index()
    return out


def headline_table(views: pd.DataFrame) -> pd.DataFrame:
    """One row per arm x split: {trained,deployed}_{hack,solve} and their 95% CI half-widths."""
    wide = views.pivot_table(
        index=["arm", "split"], columns=["view", "metric"], values=["rate", "ci"], sort=False
    )
    out = pd.DataFrame(index=wide.index)
    for view in ("trained", "deployed"):
        for m in ("hack", "solve"):
            out[f"{view}_{m}"] = wide[("rate", view, m)]
            out[f"{view}_{m}_ci"] = wide[("ci", view, m)]
    meta = views.groupby(["arm", "split"], sort=False)[["seeds", "step"]].first()
    return out.join(meta).reset_index()


def format_headline(table: pd.DataFrame) -> pd.DataFrame:
    """The headline table as "rate ± CI" strings, for printing."""
    out = table[["arm", "split", "seeds", "step"]].copy()
    for view in ("trained", "deployed"):
        for m in ("hack", "solve"):
            out[f"{view} {m}"] = [
                f"{r:.2f} ± {c:.2f}" if c == c else f"{r:.2f}"
                for r, c in zip(table[f"{view}_{m}"], table[f"{view}_{m}_ci"])
            ]
    return out


def views_figure(views: pd.DataFrame, title: str):
    """Hack and solve rate per arm, as trained beside deployed; rows: splits; 95% CI bars
    (clipped to [0, 1]: with two seeds a t-interval reaches far outside it)."""
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(views["arm"]))
    splits = [s for s in ("iid", "test") if s in set(views["split"])]
    fig, axes = plt.subplots(
        len(splits), 2, figsize=(max(9, 1.7 * len(arms) + 4), 3.8 * len(splits)), squeeze=False
    )
    x = np.arange(len(arms))
    for r, split in enumerate(splits):
        for c, metric in enumerate(("hack", "solve")):
            ax = axes[r, c]
            for j, (view, color) in enumerate((("trained", "0.65"), ("deployed", "tab:blue"))):
                t = views[
                    (views["split"] == split)
                    & (views["metric"] == metric)
                    & (views["view"] == view)
                ]
                t = t.set_index("arm").reindex(arms)
                ci = t["ci"].fillna(0)  # a rate lies in [0, 1]: so does the drawn interval
                yerr = np.vstack([np.minimum(ci, t["rate"]), np.minimum(ci, 1 - t["rate"])])
                bars = ax.bar(
                    x + (j - 0.5) * 0.38,
                    t["rate"],
                    0.38,
                    yerr=yerr,
                    capsize=3,
                    color=color,
                    label=VIEW_LABELS[view],
                    error_kw=dict(lw=1),
                )
                ax.bar_label(
                    bars, fmt="%.2f", fontsize=8, padding=2
                )  # a zero bar is otherwise invisible
            ax.set_xticks(x, arms, rotation=20, ha="right")
            ax.set(
                ylim=(0, 1.12),
                ylabel=f"{metric} rate",
                title=f"{metric} rate\n{SPLIT_TITLES[split]}",
            )
            ax.title.set_fontsize(10)
    fig.suptitle(title)
    _legend_below(fig, *axes[0, 0].get_legend_handles_labels(), ncol=2)
    return fig


# ---------------------------------------------------------------------------
# The "worked" figure: deployed rates vs step (04)
# ---------------------------------------------------------------------------


def deployed_curves(evals: pd.DataFrame) -> pd.DataFrame:
    """Per arm, split and evaluation step: deployed-view hack and solve, mean and 95% CI over seeds.

    evals: `results.eval_table`. Only rows with deployed == True: the model
    that would ship (vanilla whole, routed arms with the quarantine deleted).
    """
    dep = evals[evals["ships"].astype(bool)]
    if dep.empty:
        raise ValueError("deployed_curves: no evaluation row has deployed == True")
    rows = []
    for (arm, split, step), g in dep.groupby(["arm", "split", "step"], sort=False):
        for m in ("hack", "solve"):
            rows.append(
                dict(
                    arm=arm,
                    split=split,
                    step=int(step),
                    metric=m,
                    rate=float(g[m].mean()),
                    ci=ci95(g[m], g["n"]),
                    seeds=len(g),
                    n=int(g["n"].sum()),
                )
            )
    return pd.DataFrame(rows).sort_values(["arm", "split", "metric", "step"], kind="stable")


def first_hack_table(steps: pd.DataFrame, threshold: float = 0.5, window: int = 5) -> pd.DataFrame:
    """Per arm: mean first training step whose `window`-step mean hack rate reaches `threshold`.

    seeds_reached counts the seeds that got there; an arm none of whose seeds
    did has first_step NaN (it is not marked, and the figure says so).
    """
    from vgrout.figures.tables import first_step_above

    per_seed = first_step_above(steps, "hack", threshold, window)
    per_seed["first_step"] = pd.to_numeric(per_seed["first_step"], errors="coerce")
    g = per_seed.groupby("arm", sort=False)["first_step"]
    return pd.DataFrame(
        {
            "first_step": g.mean(),
            "seeds_reached": g.count(),
            "seeds": g.size(),
            "threshold": threshold,
            "window": window,
        }
    ).reset_index()


def worked_figure(
    curves: pd.DataFrame,
    first: pd.DataFrame,
    title: str,
    arms: Sequence[str] = (),
    evals: pd.DataFrame | None = None,
    min_seeds_for_ci: int = 3,
):
    """Deployed hack and solve vs step per arm (rows: splits), first-hack steps as dashed lines.

    With `evals` (`results.eval_table`) every seed is drawn as a thin line under
    the mean. Error bars (95% CI over seeds) are drawn from `min_seeds_for_ci`
    seeds on: with two seeds the t-interval is +-12.7 standard errors and
    covers the whole axis, which hides the curves without saying more than
    the two seeds themselves.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    arms = list(arms) or list(dict.fromkeys(curves["arm"]))
    colors = arm_colors(arms)
    splits = [s for s in ("iid", "test") if s in set(curves["split"])]
    fig, axes = plt.subplots(
        len(splits), 2, figsize=(10, 3.4 * len(splits)), squeeze=False, sharex=True
    )
    marks = first.dropna(subset=["first_step"]).set_index("arm")["first_step"]
    lo, hi = curves["step"].min(), curves["step"].max()
    dodge = 0.008 * max(
        hi - lo, 20
    )  # in steps: visible on a 60-step axis and on a single evaluation
    x_min = min([lo, *marks.tolist()]) - 1
    for r, split in enumerate(splits):
        for c, metric in enumerate(("hack", "solve")):
            ax = axes[r, c]
            for k, arm in enumerate(arms):
                t = curves[
                    (curves["arm"] == arm)
                    & (curves["split"] == split)
                    & (curves["metric"] == metric)
                ]
                dx = (k - (len(arms) - 1) / 2) * dodge  # side by side, so error bars do not overlap
                if evals is not None:
                    _seed_lines(ax, evals, arm, split, metric, dx, colors[arm])
                ci = t["ci"].fillna(0).where(t["seeds"] >= min_seeds_for_ci, 0.0)
                ax.errorbar(
                    t["step"] + dx,
                    t["rate"],
                    yerr=ci,
                    marker="o",
                    ms=4,
                    capsize=2,
                    color=colors[arm],
                    lw=2.2 if arm == "vanilla" else 1.4,
                    label=arm,
                )
                if arm in marks:
                    ax.axvline(marks[arm], color=colors[arm], ls="--", lw=1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set(
                ylim=(-0.02, 1.02),
                xlim=(x_min, hi + 1),
                ylabel=f"deployed {metric} rate",
                title=f"deployed {metric} rate\n{SPLIT_TITLES[split]}",
            )
            ax.title.set_fontsize(10)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    handles, names = axes[0, 0].get_legend_handles_labels()
    thr, win = first["threshold"].iloc[0], first["window"].iloc[0]
    handles.append(plt.Line2D([], [], color="0.3", ls="--", lw=1))
    names.append(f"first step with training hack rate >= {thr:g} ({win}-step mean)")
    never = [a for a in arms if a not in marks]
    if never:
        title += f"\nnever reached hack rate {thr:g} in training: {', '.join(never)}"
    fig.suptitle(title)
    _legend_below(fig, handles, names, ncol=min(len(names), 4))
    return fig


def _seed_lines(
    ax, evals: pd.DataFrame, arm: str, split: str, metric: str, dx: float, color
) -> None:
    """One thin line per seed: the deployed-view rate of that run at each evaluation."""
    dep = evals[evals["ships"].astype(bool) & (evals["arm"] == arm) & (evals["split"] == split)]
    for _, run in dep.groupby("seed"):
        run = run.sort_values("step")
        ax.plot(run["step"] + dx, run[metric], color=color, lw=0.8, alpha=0.45)


# ---------------------------------------------------------------------------
# Per-mode breakdown of the deployed model (04)
# ---------------------------------------------------------------------------


def deployed_mode_table(modes: pd.DataFrame) -> pd.DataFrame:
    """Per arm, split and grading mode: the deployed view's hack and solve at the last evaluation.

    modes: `results.mode_table`. Means over seeds; n is the completions graded
    in that mode summed over seeds (small on quick runs: read the rates with it).
    """
    dep = modes[modes["ships"].astype(bool)]
    if dep.empty:
        raise ValueError("deployed_mode_table: no per-mode row has deployed == True")
    last = dep[dep["step"] == dep.groupby(["arm", "seed"])["step"].transform("max")]
    return (
        last.groupby(["arm", "split", "mode"], sort=False)
        .agg(
            hack=("hack", "mean"),
            solve=("solve", "mean"),
            seeds=("seed", "nunique"),
            n=("n", "sum"),
        )
        .reset_index()
    )


def mode_figure(table: pd.DataFrame, title: str, arms: Sequence[str] = ()):
    """Heatmap of deployed hack rate, arm x grading mode, one panel per split."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    arms = list(arms) or list(dict.fromkeys(table["arm"]))
    splits = [s for s in ("iid", "test") if s in set(table["split"])]
    modes = list(dict.fromkeys(table.sort_values("mode")["mode"]))
    size = (1.1 * len(modes) * len(splits) + 4, 0.5 * len(arms) + 2.2)
    fig, axes = plt.subplots(1, len(splits), figsize=size, squeeze=False)
    for ax, split in zip(axes[0], splits):
        wide = table[table["split"] == split].pivot(index="arm", columns="mode", values="hack")
        wide = wide.reindex(index=[a for a in arms if a in wide.index], columns=modes)
        sns.heatmap(
            wide,
            annot=True,
            fmt=".2f",
            vmin=0,
            vmax=1,
            cmap="rocket_r",
            ax=ax,
            cbar=split == splits[-1],
            cbar_kws={"label": "deployed hack rate"},
        )
        ax.set_xticks(ax.get_xticks(), ax.get_xticklabels(), rotation=30, ha="right")
        ax.set_yticks(ax.get_yticks(), ax.get_yticklabels(), rotation=0)
        ax.set(
            xlabel="grading mode",
            ylabel="arm" if split == splits[0] else "",
            title=SPLIT_TITLES[split],
        )
        ax.title.set_fontsize(10)
    if len(table) < len(arms) * len(modes) * len(splits):  # e.g. a gt_only control: one mode only
        title += "\n(blank: mode not in that arm's problems)"
    fig.suptitle(title)
    fig.tight_layout()
    return fig
