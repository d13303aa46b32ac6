"""The routing classifier figure (notebook 02): F0.5 and AUROC per site and source
against the Haar-random band and the metric's ceiling.
"""

from __future__ import annotations

import pandas as pd

from vgrout.directions.metrics import CANNOT_DISCRIMINATE
from vgrout.names import SITES

SOURCE_ORDER = ("authored", "self", "placebo", "oracle", "haar")

_METRICS = (  # column, label, band median, band p95, ceiling column, verdict column
    ("f05", "F0.5 (top-q routed)", "band_median", "band_p95", "f05_ceiling", "f05_verdict"),
    ("auroc", "AUROC", "band_auroc_median", "band_auroc_p95", None, "auroc_verdict"),
)


def _draw_site(ax, t: pd.DataFrame, i: int, site: str, metric, sources, colors) -> None:
    """One site's band, ceiling, points with CIs and, if so, the 'cannot discriminate' mark."""
    import matplotlib.pyplot as plt

    col, _, lo_col, hi_col, ceil_col, verdict_col = metric
    at = t[t["site"] == site]
    band = at.iloc[0]
    ax.add_patch(
        plt.Rectangle(
            (i - 0.45, band[lo_col]), 0.9, band[hi_col] - band[lo_col], color="0.85", zorder=0
        )
    )
    if ceil_col is not None:
        ax.hlines(band[ceil_col], i - 0.45, i + 0.45, color="k", lw=1.2, zorder=1, gid="ceiling")
    if (at[verdict_col] == CANNOT_DISCRIMINATE).any():
        ax.text(
            i,
            0.02,
            CANNOT_DISCRIMINATE,
            ha="center",
            va="bottom",
            fontsize=7,
            style="italic",
            color="0.3",
        )
    width = 0.8 / len(sources)
    for j, src in enumerate(sources):
        row = at[at["source"] == src]
        if row.empty:
            continue
        row = row.iloc[0]
        ax.errorbar(
            i - 0.4 + width * (j + 0.5),
            row[col],
            yerr=[[row[col] - row[col + "_lo"]], [row[col + "_hi"] - row[col]]],
            fmt="o",
            color=colors[src],
            capsize=3,
            ms=6,
        )


def routing_figure(table: pd.DataFrame, title: str = ""):
    """F0.5 and AUROC per site and source with 95% CIs over the Haar band.

    table: `vgrout.directions.diagnostics.routing_table` rows plus a `pool` column; one
    figure row per pool. The grey bar spans the Haar band's median to 95th
    percentile: a point inside it is no better than a random direction. The
    black dash is F0.5's ceiling (a perfect ranking); where it is at the band's
    p95 the site is marked "cannot discriminate": no direction could beat it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pools = list(dict.fromkeys(table["pool"]))
    sites = [s for s in SITES if s in set(table["site"])]
    sources = [s for s in SOURCE_ORDER if s in set(table["source"])]
    sources += [s for s in dict.fromkeys(table["source"]) if s not in sources]
    colors = dict(zip(sources, plt.get_cmap("tab10")(range(10))))
    fig, axes = plt.subplots(len(pools), 2, figsize=(11, 3.6 * len(pools)), squeeze=False)
    for r, pool in enumerate(pools):
        t = table[table["pool"] == pool]
        n = t.iloc[0]
        for c, metric in enumerate(_METRICS):
            ax, label = axes[r, c], metric[1]
            for i, site in enumerate(sites):
                _draw_site(ax, t, i, site, metric, sources, colors)
            if metric[0] == "auroc":
                ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
            else:
                label = f"{label}, {n['hack_share']:.0%} hacks"
            ax.set_xticks(range(len(sites)), sites)
            ax.set_xlim(-0.5, len(sites) - 0.5)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(
                f"{pool}: {label} (test: {n['n_hack']} hack, {n['n_clean']} clean, "
                f"{n['n_problems']} problems)",
                fontsize=9,
            )
            ax.set_xlabel("extraction site")
            ax.set_ylabel(metric[1])
    handles: list = [
        plt.Line2D([], [], marker="o", ls="", color=colors[s], label=s) for s in sources
    ]
    handles.append(Patch(color="0.85", label="Haar band (median to p95)"))
    handles.append(plt.Line2D([], [], color="k", lw=1.2, label="F0.5 ceiling"))
    if title:
        fig.suptitle(title)
    legend_h = 0.35 / fig.get_figheight()  # a fixed band of figure height for the legend
    fig.tight_layout(rect=(0, legend_h, 1, 1))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        frameon=False,
        bbox_to_anchor=(0.5, 0),
    )
    return fig


def would_drop_a_panel(table: pd.DataFrame, figures_dir, name: str = "routing_classifier") -> list:
    """The pools the figure already saved in `figures_dir` has and `table` lacks.

    Why: the reference pool (real 4B-model hacks) is the one comparison on this
    figure that can fail, and its data are not in the repository. A run without
    them must not replace a figure that has their panel with one that does not;
    the notebook keeps the saved figure instead and says how to get the data.
    """
    from vgrout.figures.results import read_table
    from vgrout.paths import repo_path

    saved = repo_path(figures_dir) / f"{name}.csv"
    if not saved.is_file():
        return []
    return sorted(set(read_table(saved)["pool"]) - set(table["pool"]))
