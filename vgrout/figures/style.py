"""One seaborn style and atomic saving for every figure.

Every figure is saved as ``<figures_dir>/<name>.png`` (>= 150 dpi) beside
``<name>.csv`` holding the numbers drawn, both written to a temp file and
renamed, so an interrupted run never leaves a half-written figure that looks
finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from vgrout.files import atomic_write
from vgrout.paths import repo_path

DPI = 150

SIDE_BY_SIDE_ARMS = 8
"""Most arms a bar figure draws with its panels side by side; with more (the monitor
grid has 17) each bar would be too narrow to read, so the panels stack one a row."""


def setup(figures_dir: str | Path, threads: int = 1) -> Path:
    """Apply the shared style, limit torch threads, create and return the figures folder.

    threads: torch CPU threads (the reference machine has 2 shared cores; 0
    leaves torch's default, for a GPU machine).
    """
    import seaborn as sns

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette="colorblind",
        rc={"figure.dpi": 100, "savefig.dpi": DPI, "axes.titleweight": "bold"},
    )
    out = repo_path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_table(df: pd.DataFrame, name: str, figures_dir: str | Path) -> Path:
    """``<figures_dir>/<name>.csv`` written atomically; refuses an empty table."""
    if df.empty:
        raise ValueError(f"save_table: table {name!r} is empty; a figure needs numbers behind it")
    return atomic_write(
        repo_path(figures_dir) / f"{name}.csv", lambda tmp: df.to_csv(tmp, index=False)
    )


def save_figure(
    fig, name: str, figures_dir: str | Path, data: pd.DataFrame | None = None, dpi: int = DPI
) -> Path:
    """``<name>.png`` at >= 150 dpi, and ``<name>.csv`` from `data` when given."""
    if dpi < DPI:
        raise ValueError(f"save_figure: dpi {dpi} is below the project's minimum {DPI}")
    out = repo_path(figures_dir)
    if data is not None:
        save_table(data, name, out)
    return atomic_write(
        out / f"{name}.png",
        lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"),
    )


def arm_colors(arms: Sequence[str]) -> dict:
    """One colour per arm, the same in every figure; vanilla is dark grey (the baseline)."""
    import seaborn as sns

    others = [a for a in dict.fromkeys(arms) if a != "vanilla"]
    # the colour-blind palette has 10 colours and repeats after them: a larger grid
    # (the monitor grid has 17 arms) takes 20 distinct ones instead
    palette = "colorblind" if len(others) <= 10 else "tab20"
    colors = dict(zip(others, sns.color_palette(palette, max(len(others), 1))))
    return {"vanilla": (0.2, 0.2, 0.2), **colors}


def legend_below(fig, handles, labels, ncol: int, title: str | None = None) -> None:
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
