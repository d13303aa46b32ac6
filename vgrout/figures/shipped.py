"""What ships, for notebook 04: as trained vs shipped, rates during training, per mode.

Vocabulary (`vgrout.names.VIEWS`): a run is evaluated in two views, *trained*
(both blocks) and *deployed* (the quarantine deleted). What *ships* is one of
them: the deployed view on arms that route or absorb, the trained view on
vanilla, which deploys whole. These tables speak of "shipped" for the view that
ships (the `ships` column of the evaluation rows) and never call it "deployed",
so a vanilla row is not mislabelled as quarantine-deleted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from vgrout.figures import style
from vgrout.figures.tables import ci95

SPLIT_TITLES = {
    "iid": "training problems (training markers)",
    "test": "held-out problems (evaluation markers)",
}
VIEW_LABELS = {"trained": "as trained (whole model)", "shipped": "shipped (what deploys)"}


def views_table(summary: pd.DataFrame, arms: Sequence[str] = ()) -> pd.DataFrame:
    """Long table: arm, split, view (trained | shipped), metric, rate, ci, seeds, step.

    summary: `tables.final_summary`. "trained" is the whole model; "shipped" is
    the view that ships (the quarantine deleted on arms that route or absorb,
    the whole model on vanilla, where both rows are the same numbers).
    """
    rows = []
    for (arm, split), g in summary.groupby(["arm", "split"], sort=False):
        picks = {"trained": g[g["view"] == "trained"], "shipped": g[g["ships"].astype(bool)]}
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
    """One row per arm x split: {trained,shipped}_{hack,solve} and their 95% CI half-widths."""
    wide = views.pivot_table(
        index=["arm", "split"], columns=["view", "metric"], values=["rate", "ci"], sort=False
    )
    out = pd.DataFrame(index=wide.index)
    for view in ("trained", "shipped"):
        for m in ("hack", "solve"):
            out[f"{view}_{m}"] = wide[("rate", view, m)]
            out[f"{view}_{m}_ci"] = wide[("ci", view, m)]
    meta = views.groupby(["arm", "split"], sort=False)[["seeds", "step"]].first()
    return out.join(meta).reset_index()


def format_headline(table: pd.DataFrame) -> pd.DataFrame:
    """The headline table as "rate ± CI" strings, for printing."""
    out = table[["arm", "split", "seeds", "step"]].copy()
    for view in ("trained", "shipped"):
        for m in ("hack", "solve"):
            out[f"{view} {m}"] = [
                f"{r:.2f} ± {c:.2f}" if c == c else f"{r:.2f}"
                for r, c in zip(table[f"{view}_{m}"], table[f"{view}_{m}_ci"])
            ]
    return out


def views_figure(views: pd.DataFrame, title: str):
    """Hack and solve rate per arm, as trained beside shipped; rows: splits; 95% CI bars
    (clipped to [0, 1]: with two seeds a t-interval reaches far outside it)."""
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(views["arm"]))
    splits = [s for s in ("iid", "test") if s in set(views["split"])]
    panels = [(split, metric) for split in splits for metric in ("hack", "solve")]
    if len(arms) > style.SIDE_BY_SIDE_ARMS:
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(0.9 * len(arms) + 3, 3.6 * len(panels)), squeeze=False
        )
    else:
        fig, axes = plt.subplots(
            len(splits), 2, figsize=(max(9, 1.7 * len(arms) + 4), 3.8 * len(splits)), squeeze=False
        )
    x = np.arange(len(arms))
    for ax, (split, metric) in zip(axes.flat, panels):
        for j, (view, color) in enumerate((("trained", "0.65"), ("shipped", "tab:blue"))):
            t = views[
                (views["split"] == split) & (views["metric"] == metric) & (views["view"] == view)
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
    handles, labels = axes[0, 0].get_legend_handles_labels()
    style.legend_below(fig, handles, labels, ncol=2)
    return fig


def shipped_curves(evals: pd.DataFrame) -> pd.DataFrame:
    """Per arm, split and evaluation step: shipped hack and solve, mean and 95% CI over seeds.

    evals: `Grid.evals()`. Only rows with ships == True: the model that ships
    (vanilla whole, the other arms with the quarantine deleted).
    """
    dep = evals[evals["ships"].astype(bool)]
    if dep.empty:
        raise ValueError("shipped_curves: no evaluation row has ships == True")
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
    """Shipped hack and solve vs step per arm (rows: splits), first-hack steps as dashed lines.

    With `evals` (`Grid.evals()`) every seed is drawn as a thin line under
    the mean. Error bars (95% CI over seeds) are drawn from `min_seeds_for_ci`
    seeds on: with two seeds the t-interval is +-12.7 standard errors and
    covers the whole axis, which hides the curves without saying more than
    the two seeds themselves.
    """
    import matplotlib.pyplot as plt

    arms = list(arms) or list(dict.fromkeys(curves["arm"]))
    splits = [s for s in ("iid", "test") if s in set(curves["split"])]
    fig, axes = plt.subplots(
        len(splits), 2, figsize=(10, 3.4 * len(splits)), squeeze=False, sharex=True
    )
    marks = first.dropna(subset=["first_step"]).set_index("arm")["first_step"]
    for r, split in enumerate(splits):
        for c, metric in enumerate(("hack", "solve")):
            _worked_panel(axes[r, c], curves, split, metric, arms, marks, evals, min_seeds_for_ci)
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
    style.legend_below(fig, handles, names, ncol=min(len(names), 4))
    return fig


def _worked_panel(ax, curves, split, metric, arms, marks, evals, min_seeds_for_ci) -> None:
    """One panel of `worked_figure`: every arm's shipped `metric` on `split` against step."""
    from matplotlib.ticker import MaxNLocator

    colors = style.arm_colors(arms)
    lo, hi = curves["step"].min(), curves["step"].max()
    dodge = 0.008 * max(hi - lo, 20)  # in steps: visible on a 60-step axis and on one evaluation
    for k, arm in enumerate(arms):
        t = curves[
            (curves["arm"] == arm) & (curves["split"] == split) & (curves["metric"] == metric)
        ]
        dx = (k - (len(arms) - 1) / 2) * dodge  # side by side, so error bars do not overlap
        if evals is not None:
            _seed_lines(ax, evals, arm, split, metric, dx, colors[arm])
        ci = t["ci"].fillna(0).where(t["seeds"] >= min_seeds_for_ci, 0.0)
        ax.errorbar(t["step"] + dx, t["rate"], yerr=ci, marker="o", ms=4, capsize=2,
                    color=colors[arm], lw=2.2 if arm == "vanilla" else 1.4, label=arm)  # fmt: skip
        if arm in marks:
            ax.axvline(marks[arm], color=colors[arm], ls="--", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(
        ylim=(-0.02, 1.02),
        xlim=(min([lo, *marks.tolist()]) - 1, hi + 1),
        ylabel=f"shipped {metric} rate",
        title=f"shipped {metric} rate\n{SPLIT_TITLES[split]}",
    )
    ax.title.set_fontsize(10)


def _seed_lines(
    ax, evals: pd.DataFrame, arm: str, split: str, metric: str, dx: float, color
) -> None:
    """One thin line per seed: the shipped rate of that run at each evaluation."""
    dep = evals[evals["ships"].astype(bool) & (evals["arm"] == arm) & (evals["split"] == split)]
    for _, run in dep.groupby("seed"):
        run = run.sort_values("step")
        ax.plot(run["step"] + dx, run[metric], color=color, lw=0.8, alpha=0.45)


def shipped_mode_table(modes: pd.DataFrame) -> pd.DataFrame:
    """Per arm, split and grading mode: the shipped view's hack and solve at the last evaluation.

    modes: `Grid.modes()`. Means over seeds; n is the completions graded
    in that mode summed over seeds (small on quick runs: read the rates with it).
    """
    dep = modes[modes["ships"].astype(bool)]
    if dep.empty:
        raise ValueError("shipped_mode_table: no per-mode row has ships == True")
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
    """Heatmap of shipped hack rate, arm x grading mode, one panel per split."""
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
            cbar_kws={"label": "shipped hack rate"},
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
