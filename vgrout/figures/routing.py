"""The routing classifier figure (notebook 02): F0.5 and AUROC per site and source
against the Haar-random band.
"""

from __future__ import annotations

import pandas as pd

from vgrout.names import SITES

SOURCE_ORDER = ("authored", "self", "placebo", "oracle", "haar")


_METRICS = (
    ("f05", "F0.5 (top-q routed)", "band_median", "band_p95"),
    ("auroc", "AUROC", "band_auroc_median", "band_auroc_p95"),
)


def routing_figure(table: pd.DataFrame, title: str = ""):
    """F0.5 and AUROC per site and source with 95% CIs over the Haar band.

    table: `vgrout.directions.diagnostics.routing_table` rows plus a `pool` column; one
    figure row per pool. The grey bar spans the Haar band's median to 95th
    percentile: a point inside it is no better than a random direction.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pools = list(dict.fromkeys(table["pool"]))
    sites = [s for s in SITES if s in set(table["site"])]
    sources = [s for s in SOURCE_ORDER if s in set(table["source"])]
    sources += [s for s in dict.fromkeys(table["source"]) if s not in sources]
    colors = dict(zip(sources, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(len(pools), 2, figsize=(11, 3.6 * len(pools)), squeeze=False)
    width = 0.8 / len(sources)
    for r, pool in enumerate(pools):
        t = table[table["pool"] == pool]
        for c, (col, label, lo_col, hi_col) in enumerate(_METRICS):
            ax = axes[r, c]
            for i, site in enumerate(sites):
                band = t[t["site"] == site].iloc[0]
                ax.add_patch(
                    plt.Rectangle(
                        (i - 0.45, band[lo_col]),
                        0.9,
                        band[hi_col] - band[lo_col],
                        color="0.85",
                        zorder=0,
                    )
                )
                for j, src in enumerate(sources):
                    row = t[(t["site"] == site) & (t["source"] == src)]
                    if row.empty:
                        continue
                    row = row.iloc[0]
                    x = i - 0.4 + width * (j + 0.5)
                    ax.errorbar(
                        x,
                        row[col],
                        yerr=[[row[col] - row[col + "_lo"]], [row[col + "_hi"] - row[col]]],
                        fmt="o",
                        color=colors[src],
                        capsize=3,
                        ms=6,
                    )
            if col == "auroc":
                ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
            ax.set_xticks(range(len(sites)), sites)
            ax.set_xlim(-0.5, len(sites) - 0.5)
            ax.set_ylim(-0.02, 1.02)
            n = t.iloc[0]
            ax.set_title(
                f"{pool}: {label} (test: {n['n_hack']} hack, {n['n_clean']} clean)", fontsize=10
            )
            ax.set_xlabel("extraction site")
            ax.set_ylabel(label)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[s], label=s) for s in sources]
    handles.append(Patch(color="0.85", label="Haar band (median to p95)"))
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
