"""Training curves of a GRPO grid, for notebook 03: per-step rates, zones, gate quality.

Each curve is the mean over seeds of a per-seed rolling mean, with the seeds'
min-max band; every number comes from the grid's step records
(`vgrout.figures.grid.Grid.steps`), so a figure and the csv beside it agree.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from vgrout.figures import style


def curve_table(steps: pd.DataFrame, metrics: Sequence[str], smooth: int = 1) -> pd.DataFrame:
    """Per arm, step and metric: mean, min and max over seeds of a rolling mean.

    steps: `Grid.steps()`. Per-step rates come from one batch of
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
    colors = style.arm_colors(arms)
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
    style.legend_below(
        fig, handles, [h.get_label() for h in handles], min(len(handles), 6), title="arm"
    )
    return fig
