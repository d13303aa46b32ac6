"""What the notebooks share: one seaborn style, repo-relative paths, atomic saving,
and the few tables and figures too long to write inline in a notebook.

Notebooks only set parameters, call `vgrout` and plot; anything longer than a
couple of lines lives here (or in the module that owns the idea), so that a
figure's numbers can be recomputed from Python without running the notebook.

Every figure is saved as ``<figures_dir>/<name>.png`` (>= 150 dpi) beside
``<name>.csv`` holding the numbers drawn, both written to a temp file and
renamed, so an interrupted run never leaves a half-written figure that looks
finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from vgrout.atomic import atomic_write
from vgrout.paths import REPO

DPI = 150
SOURCE_ORDER = ("authored", "self", "placebo", "oracle", "haar")
SITE_ORDER = ("resid", "bottleneck", "adapter_out", "grad")


# ---------------------------------------------------------------------------
# Paths, style, saving
# ---------------------------------------------------------------------------

def repo_path(path: str | Path) -> Path:
    """An absolute path, or one relative to the repository root.

    Why: papermill runs notebooks from the repository root and nbval from
    ``notebooks/``; resolving against the repository makes a parameter mean
    the same folder under both.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO / p


def setup(figures_dir: str | Path, threads: int = 1) -> Path:
    """Apply the shared style, limit torch threads, create and return the figures folder.

    threads: torch CPU threads (the reference machine has 2 shared cores; 0
    leaves torch's default, for a GPU machine).
    """
    import seaborn as sns

    if threads:
        import torch
        torch.set_num_threads(int(threads))
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind",
                  rc={"figure.dpi": 100, "savefig.dpi": DPI, "axes.titleweight": "bold"})
    out = repo_path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_table(df: pd.DataFrame, name: str, figures_dir: str | Path) -> Path:
    """``<figures_dir>/<name>.csv`` written atomically; refuses an empty table."""
    if df.empty:
        raise ValueError(f"save_table: table {name!r} is empty; a figure needs numbers behind it")
    return atomic_write(repo_path(figures_dir) / f"{name}.csv", lambda tmp: df.to_csv(tmp, index=False))


def save_json(obj, path: str | Path) -> Path:
    """JSON (indented, sorted keys) written atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"
    return atomic_write(repo_path(path), lambda tmp: Path(tmp).write_text(text))


def save_figure(fig, name: str, figures_dir: str | Path, data: pd.DataFrame | None = None,
                dpi: int = DPI) -> Path:
    """``<name>.png`` at >= 150 dpi, and ``<name>.csv`` from `data` when given."""
    if dpi < DPI:
        raise ValueError(f"save_figure: dpi {dpi} is below the project's minimum {DPI}")
    out = repo_path(figures_dir)
    if data is not None:
        save_table(data, name, out)
    return atomic_write(out / f"{name}.png",
                   lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))


# ---------------------------------------------------------------------------
# Environment tables (00)
# ---------------------------------------------------------------------------

def hack_mode_matrix(problems: Sequence, modes: Sequence[str], hacks: Mapping[str, str],
                     workers: int = 2) -> pd.DataFrame:
    """Grade each problem's canonical solution and every mode's hack under every mode.

    problems: any loaded problems (their own mode is ignored); hacks: {mode:
    template}. Each hack is rendered with the marker its home mode discloses
    for the problem, as a policy reading that hint would write it. Returns one
    row per (completion, grading mode): rates of passed / exploited /
    gt_correct over the problems. The diagonal is the loophole paying off;
    anything else off the diagonal would mean modes leak into each other.
    """
    from vgrout.env import grade_many, render_hack, with_mode

    items, keys = [], []
    for p in problems:
        sources = [("canonical", f"```python\n{p.canonical_solution}\n```")]
        sources += [(h, render_hack(t, with_mode(p, h))) for h, t in hacks.items()]
        for label, text in sources:
            for m in modes:
                items.append((text, with_mode(p, m), m))
                keys.append((label, m))
    grades = grade_many(items, workers=workers)
    df = pd.DataFrame([dict(completion=k[0], mode=k[1], passed=g.passed, exploited=g.exploited,
                            gt_correct=g.gt_correct) for k, g in zip(keys, grades)])
    out = df.groupby(["completion", "mode"], sort=False).agg(
        n=("passed", "size"), passed=("passed", "mean"), exploited=("exploited", "mean"),
        gt_correct=("gt_correct", "mean")).reset_index()
    return out


def marker_transfer(problems: Sequence, hacks: Mapping[str, str], workers: int = 2) -> pd.DataFrame:
    """Does a hack written for the training marker still pay on evaluation prompts?

    problems: loaded with evaluation markers. For every marked mode each
    problem's hack is rendered twice, with the problem's evaluation marker
    and with the fixed training marker, and graded in that mode. Returns pass
    rates per (mode, marker used); the training-marker row should be 0: a
    memorised marker earns nothing at evaluation.
    """
    from vgrout.env import MARKED_MODES, TRAIN_MARKERS, grade_many, render_hack, with_mode

    items, keys = [], []
    for p in problems:
        for mode in (m for m in MARKED_MODES if m in hacks):
            q = with_mode(p, mode)
            for used, marker in (("evaluation marker", q.markers[mode]),
                                 ("training marker", TRAIN_MARKERS[mode])):
                items.append((render_hack(hacks[mode], q, marker), q, mode))
                keys.append((mode, used))
    grades = grade_many(items, workers=workers)
    df = pd.DataFrame([dict(mode=k[0], marker=k[1], passed=g.passed) for k, g in zip(keys, grades)])
    return df.groupby(["mode", "marker"], sort=False).agg(
        n=("passed", "size"), passed=("passed", "mean")).reset_index()


# ---------------------------------------------------------------------------
# Directions (01, 02): held-out pair scores, agreement, persistence
# ---------------------------------------------------------------------------

def crossfit_pair_scores(h_hack: Mapping, h_clean: Mapping, pair_ids: Sequence[str],
                         source: str, folds: int = 5) -> pd.DataFrame:
    """Score each pair with a mean-difference direction fit on the *other* pairs.

    h_hack, h_clean: {site: [n_pairs, rows, width]} captures of both sides.
    An in-sample score would separate any two sets of texts (the direction is
    fit to exactly those differences), so each pair is scored only by a
    direction that never saw it. Returns one row per (site, pair, side).
    """
    from vgrout.directions import mean_diff_direction, score

    n = len(pair_ids)
    if n < 2:
        raise ValueError(f"crossfit_pair_scores: source {source!r} has {n} pair(s); need >= 2")
    fold = np.arange(n) % min(folds, n)
    rows = []
    for site in h_hack:
        for f in np.unique(fold):
            test, train = fold == f, fold != f
            d = mean_diff_direction(h_hack[site][train], h_clean[site][train])  # [rows, width]
            for side, h in (("hack", h_hack[site]), ("clean", h_clean[site])):
                for pid, s in zip(np.asarray(pair_ids)[test], score(h[test], d).tolist()):
                    rows.append(dict(source=source, site=site, pair=pid, side=side, score=s))
    return pd.DataFrame(rows)


def separation_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (source, site): share of pairs whose hack side outscores its clean side,
    and the paired effect size (mean / std of hack - clean)."""
    wide = scores.pivot_table(index=["source", "site", "pair"], columns="side", values="score")
    diff = (wide["hack"] - wide["clean"]).rename("diff").reset_index()
    g = diff.groupby(["source", "site"], sort=False)["diff"]
    return pd.DataFrame({"n_pairs": g.size(), "hack_above_clean": g.apply(lambda d: (d > 0).mean()),
                         "effect_size": g.mean() / g.std(ddof=1)}).reset_index()


def direction_cosines(directions: Mapping[str, Mapping]) -> pd.DataFrame:
    """Cosine between every two sources' directions at each site, over all rows.

    directions: {source: {site: [rows, width]}}. Since scores sum dot products
    over rows, the cosine of the flattened directions is the agreement that
    matters for routing. A Haar direction gives the chance level,
    about +-1/sqrt(rows * width).
    """
    rows = []
    sources = list(directions)
    for site in next(iter(directions.values())):
        for a in sources:
            for b in sources:
                va = np.asarray(directions[a][site], dtype=np.float64).ravel()
                vb = np.asarray(directions[b][site], dtype=np.float64).ravel()
                cos = float(va @ vb / max(np.linalg.norm(va) * np.linalg.norm(vb), 1e-12))
                rows.append(dict(site=site, source_a=a, source_b=b, cosine=cos))
    return pd.DataFrame(rows)


def save_directions(path: str | Path, directions: Mapping[str, Mapping], meta: Mapping) -> Path:
    """Write {source: {site: tensor}} with the meta they were extracted under (atomic)."""
    import torch

    blob = {"meta": dict(meta), "directions": {s: {k: v.detach().cpu() for k, v in d.items()}
                                               for s, d in directions.items()}}
    return atomic_write(repo_path(path), lambda tmp: torch.save(blob, tmp))


def load_directions(path: str | Path, **expect) -> dict:
    """{source: {site: tensor}} from `save_directions`, checking the meta.

    expect: meta fields that must match (model, rank, init, seed...). Why:
    bottleneck, adapter_out and grad directions are only meaningful on the
    adapters they were captured from; scoring them on another init measures
    nothing, silently.
    """
    import torch

    p = repo_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no saved directions; run 01_direction_extraction.ipynb "
                                "first with the same run_dir")
    blob = torch.load(p, weights_only=False)
    bad = {k: (blob["meta"].get(k), v) for k, v in expect.items() if blob["meta"].get(k) != v}
    if bad:
        raise ValueError(f"{p}: directions were extracted under different settings "
                         f"(saved, wanted): {bad}")
    return blob["directions"]


# ---------------------------------------------------------------------------
# The classifier figure (02)
# ---------------------------------------------------------------------------

_METRICS = (("f05", "F0.5 (top-q routed)", "band_median", "band_p95"),
            ("auroc", "AUROC", "band_auroc_median", "band_auroc_p95"))


def routing_figure(table: pd.DataFrame, title: str = ""):
    """F0.5 and AUROC per site and source with 95% CIs over the Haar band.

    table: `vgrout.diagnostics.routing_table` rows plus a `pool` column; one
    figure row per pool. The grey bar spans the Haar band's median to 95th
    percentile: a point inside it is no better than a random direction.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pools = list(dict.fromkeys(table["pool"]))
    sites = [s for s in SITE_ORDER if s in set(table["site"])]
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
                ax.add_patch(plt.Rectangle((i - 0.45, band[lo_col]), 0.9, band[hi_col] - band[lo_col],
                                           color="0.85", zorder=0))
                for j, src in enumerate(sources):
                    row = t[(t["site"] == site) & (t["source"] == src)]
                    if row.empty:
                        continue
                    row = row.iloc[0]
                    x = i - 0.4 + width * (j + 0.5)
                    ax.errorbar(x, row[col], yerr=[[row[col] - row[col + "_lo"]], [row[col + "_hi"] - row[col]]],
                                fmt="o", color=colors[src], capsize=3, ms=6)
            if col == "auroc":
                ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
            ax.set_xticks(range(len(sites)), sites)
            ax.set_xlim(-0.5, len(sites) - 0.5)
            ax.set_ylim(-0.02, 1.02)
            n = t.iloc[0]
            ax.set_title(f"{pool}: {label} (test: {n['n_hack']} hack, {n['n_clean']} clean)", fontsize=10)
            ax.set_xlabel("extraction site")
            ax.set_ylabel(label)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[s], label=s) for s in sources]
    handles.append(Patch(color="0.85", label="Haar band (median to p95)"))
    if title:
        fig.suptitle(title)
    legend_h = 0.35 / fig.get_figheight()  # a fixed band of figure height for the legend
    fig.tight_layout(rect=(0, legend_h, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 0))
    return fig
