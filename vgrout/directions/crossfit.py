"""Cross-fitted pair scores, their separation summary and direction cosines (notebook 01).

A pair scored by a direction fit on itself separates by construction; every
score here comes from a direction fit on the other folds.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd


def crossfit_pair_scores(
    h_hack: Mapping, h_clean: Mapping, pair_ids: Sequence[str], source: str, folds: int = 5
) -> pd.DataFrame:
    """Score each pair with a mean-difference direction fit on the *other* pairs.

    h_hack, h_clean: {site: [n_pairs, rows, width]} captures of both sides.
    An in-sample score would separate any two sets of texts (the direction is
    fit to exactly those differences), so each pair is scored only by a
    direction that never saw it. Returns one row per (site, pair, side).
    """
    from vgrout.directions.extract import mean_diff_direction, score

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
    return pd.DataFrame(
        {
            "n_pairs": g.size(),
            "hack_above_clean": g.apply(lambda d: (d > 0).mean()),
            "effect_size": g.mean() / g.std(ddof=1),
        }
    ).reset_index()


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
