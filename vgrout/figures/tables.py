"""Tables of finished GRPO runs, for notebooks and docs.

Every number a figure shows comes from a run folder through these functions,
so a figure and its csv cannot disagree.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import pandas as pd

from vgrout.figures.stats import t975
from vgrout.grpo.rundir import load_run

RunMap = Mapping[tuple[str, int], Path]


def eval_table(runs: RunMap) -> pd.DataFrame:
    """Every evaluation row of every run, with arm and seed columns."""
    rows = []
    for (arm, seed), path in runs.items():
        for e in load_run(path).evals:
            rows.append(
                {"arm": arm, "seed": seed, **{k: v for k, v in e.items() if k != "by_mode"}}
            )
    return pd.DataFrame(rows)


def mode_table(runs: RunMap) -> pd.DataFrame:
    """Per-mode hack/solve rates of every evaluation row."""
    rows = []
    for (arm, seed), path in runs.items():
        for e in load_run(path).evals:
            for mode, r in (e.get("by_mode") or {}).items():
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "step": e["step"],
                        "split": e["split"],
                        "view": e["view"],
                        "ships": e["ships"],
                        "mode": mode,
                        **r,
                    }
                )
    return pd.DataFrame(rows)


def step_table(runs: RunMap) -> pd.DataFrame:
    rows = []
    for (arm, seed), path in runs.items():
        for s in load_run(path).steps:
            if "reward" in s:
                rows.append({"arm": arm, "seed": seed, **s})
    return pd.DataFrame(rows)


def ci95(values: pd.Series, n_samples: pd.Series | None = None) -> float:
    """Half-width of a 95% interval: t over seeds, or binomial for a single seed."""
    k = len(values)
    if k >= 2:
        return t975(k - 1) * float(values.std(ddof=1)) / math.sqrt(k)
    if n_samples is not None and k == 1:
        p, n = float(values.iloc[0]), float(n_samples.iloc[0])
        return 1.96 * math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")
    return float("nan")


def final_summary(runs: RunMap, metrics=("hack", "solve")) -> pd.DataFrame:
    """Mean and 95% CI over seeds of the last evaluation, per arm x split x view."""
    ev = eval_table(runs)
    last = ev[ev["step"] == ev.groupby(["arm", "seed"])["step"].transform("max")]
    out = []
    for (arm, split, view), g in last.groupby(["arm", "split", "view"], sort=False):
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
