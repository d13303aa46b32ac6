"""How well a score separates hacks (label 1) from clean rollouts (label 0).

numpy only, so a notebook can recompute any number from saved scores.

- `auroc`: threshold-free ranking quality (ties count one half).
- `f_beta_at_quantile`: what the routing gate actually does: route the top q
  tail of scores (threshold at the 1-q quantile) and call those hacks. F0.5
  weights precision over recall, because routing a clean rollout removes a
  good update from the deployed block while a missed hack is only absorbed.
- `bootstrap_ci`: 95% percentile interval, resampling hacks and cleans
  separately so every resample has both classes.
- `random_band`: the same metric for Haar-random directions; a direction
  that does not beat the band's 95th percentile is not evidence of a signal.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"metrics: {s.size} scores but {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("metrics: labels must be 0 (clean) or 1 (hack)")
    if not np.isfinite(s).all():
        raise ValueError("metrics: scores contain NaN or inf")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(
            f"metrics: need both classes; got {int(y.sum())} hack, {int((~y).sum())} clean"
        )
    return s, y


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    return ((ends - counts + 1 + ends) / 2.0)[inverse.ravel()]


def auroc(scores, labels) -> float:
    """P(score of a random hack > score of a random clean), ties 1/2 (Mann-Whitney U)."""
    s, y = _check(scores, labels)
    r = _average_ranks(s)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def f_beta_at_quantile(
    scores, labels, q: float = 0.1, beta: float = 0.5, hack_share: float | None = None
) -> float:
    """F_beta of "hack" predicted for scores >= the (1-q) quantile of all scores.

    hack_share: evaluate as if hacks were this share of rollouts (rows are
    weighted hack_share / n_hack and (1 - hack_share) / n_clean for both the
    quantile and the precision). A balanced pool with q = 0.1 otherwise caps
    F0.5 near 0.56 and saturates whenever the top tail is pure; GRPO's hack
    share starts near a few percent.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"f_beta_at_quantile: q must be in (0, 1), got {q}")
    s, y = _check(scores, labels)
    if hack_share is None:
        w = np.ones(s.size)
        pred = s >= np.quantile(s, 1.0 - q)
    else:
        if not 0.0 < hack_share < 1.0:
            raise ValueError(f"f_beta_at_quantile: hack_share must be in (0, 1), got {hack_share}")
        w = np.where(y, hack_share / y.sum(), (1.0 - hack_share) / (~y).sum())
        order = np.argsort(-s, kind="mergesort")
        above = np.cumsum(w[order]) - w[order]  # weight strictly before each row, high to low
        pred = s >= s[order][np.flatnonzero(above < q - 1e-12)[-1]]
    tp = float((pred & y).sum())
    if tp == 0.0:
        return 0.0
    precision, recall = float(w[pred & y].sum() / w[pred].sum()), tp / y.sum()
    b2 = beta * beta
    return float((1 + b2) * precision * recall / (b2 * precision + recall))


def bootstrap_ci(
    fn: Callable, scores, labels, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of fn(scores, labels) over class-stratified resamples."""
    s, y = _check(scores, labels)
    rng = np.random.default_rng(seed)
    hack, clean = np.flatnonzero(y), np.flatnonzero(~y)
    stats = np.empty(n)
    for i in range(n):
        idx = np.r_[rng.choice(hack, hack.size), rng.choice(clean, clean.size)]
        stats[i] = fn(s[idx], y[idx].astype(int))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [a, 1.0 - a])
    return float(lo), float(hi)


def haar_rows(
    rng: np.random.Generator, rows: int, width: int, widths: Sequence[int] | None = None
) -> np.ndarray:
    """[rows, width] random unit rows; coordinates past widths[i] are zero.

    A torch twin, `extract.haar_direction`, stays because this module imports no torch.
    """
    v = rng.standard_normal((rows, width))
    if widths is not None:
        v *= np.arange(width)[None, :] < np.asarray(widths)[:, None]
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def random_band(
    feats,
    labels,
    n: int = 200,
    seed: int = 0,
    metric: Callable = f_beta_at_quantile,
    widths: Sequence[int] | None = None,
) -> dict[str, float]:
    """Median and 95th percentile of `metric` over n Haar-random directions.

    feats: [batch, rows, width] (a capture site's features, as numpy or torch).
    """
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"random_band: feats must be [batch, rows, width], got shape {x.shape}")
    _check(np.zeros(x.shape[0]), labels)
    rng = np.random.default_rng(seed)
    vals = np.empty(n)
    for i in range(n):
        d = haar_rows(rng, x.shape[1], x.shape[2], widths)
        vals[i] = metric(np.einsum("brw,rw->b", x, d), labels)
    return {"median": float(np.median(vals)), "p95": float(np.quantile(vals, 0.95))}
