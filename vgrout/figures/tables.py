"""Summary tables of a GRPO grid, for notebooks and docs.

Every number a figure shows comes from a grid's records (`vgrout.figures.grid`)
through these functions, so a figure and its csv cannot disagree.
"""

from __future__ import annotations

import math

import pandas as pd

from vgrout.figures.stats import t975


def ci95(values: pd.Series, n_samples: pd.Series | None = None) -> float:
    """Half-width of a 95% interval: t over seeds, or binomial for a single seed."""
    k = len(values)
    if k >= 2:
        return t975(k - 1) * float(values.std(ddof=1)) / math.sqrt(k)
    if n_samples is not None and k == 1:
        p, n = float(values.iloc[0]), float(n_samples.iloc[0])
        return 1.96 * math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")
    return float("nan")


def final_summary(seeds: pd.DataFrame, metrics=("hack", "solve")) -> pd.DataFrame:
    """Mean and 95% CI over seeds of the final evaluation, per arm x split x view.

    seeds: `ablation.seed_table` (each run's final evaluation rows).
    """
    out = []
    for (arm, split, view), g in seeds.groupby(["arm", "split", "view"], sort=False):
        row = {
            "arm": arm,
            "split": split,
            "view": view,
            "ships": bool(g["ships"].iloc[0]),
            "seeds": len(g),
            "step": int(g["step"].iloc[0]),
        }
        for m in metrics:
            row[m] = float(g[m].mean())
            row[f"{m}_ci"] = ci95(g[m], g["n"])
        out.append(row)
    return pd.DataFrame(out)


def first_step_above(
    steps: pd.DataFrame, metric: str = "hack", threshold: float = 0.5, window: int = 5
) -> pd.DataFrame:
    """First step at which the rolling mean of a training metric reaches `threshold`."""
    out = []
    for (arm, seed), g in steps.sort_values("step").groupby(["arm", "seed"]):
        roll = g[metric].rolling(window, min_periods=1).mean()
        hit = g["step"][roll >= threshold]
        out.append({"arm": arm, "seed": seed, "first_step": int(hit.iloc[0]) if len(hit) else None})
    return pd.DataFrame(out)
