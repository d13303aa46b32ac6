"""How well a score separates hacks (label 1) from clean rollouts (label 0).

numpy only, so a notebook can recompute any number from saved scores.

- `auroc`: threshold-free ranking quality (ties count one half).
- `f_beta_at_quantile`: what the routing gate actually does: route exactly
  the top q of rollouts by score and call those hacks. F0.5 weights
  precision over recall, because routing a clean rollout removes a good
  update from the deployed block while a missed hack is only absorbed.
- `f_beta_ceiling`: the best that metric can be on given labels (a perfect
  ranking). A comparison whose ceiling is at the random band cannot fail.
- `bootstrap_ci`: 95% percentile interval over resampled *problems*
  (cluster bootstrap), stratified so every resample has both classes.
- `random_band`: the same metric for Haar-random directions; a direction
  that does not beat the band's 95th percentile is not evidence of a signal.
- `band_verdict`: beats / does not beat the band, or cannot discriminate.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

CANNOT_DISCRIMINATE = "cannot discriminate"
BEATS, DOES_NOT_BEAT = "beats band", "does not beat band"


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


def _weights(y: np.ndarray, hack_share: float | None) -> np.ndarray:
    """Row weights: 1 each, or hack_share / n_hack and (1 - hack_share) / n_clean."""
    if hack_share is None:
        return np.ones(y.size)
    if not 0.0 < hack_share < 1.0:
        raise ValueError(f"metrics: hack_share must be in (0, 1), got {hack_share}")
    return np.where(y, hack_share / y.sum(), (1.0 - hack_share) / (~y).sum())


def top_q_fraction(scores, q: float, weights=None) -> np.ndarray:
    """[n] share of each row that is routed when exactly q of the weight is routed.

    Rows are taken from the highest score down until their weight reaches
    q * total. The tie group that straddles that capacity shares what is left
    of it: each of its rows is routed by the same fraction (the expectation of
    breaking the tie at random), so the routed weight is exactly q * total
    however many scores tie. weights: one per row (default 1).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"top_q_fraction: q must be in (0, 1), got {q}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.ones(s.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    group = np.cumsum(np.r_[True, ss[1:] != ss[:-1]]) - 1  # tie group of each sorted row
    group_w = np.bincount(group, weights=w[order])
    before = np.cumsum(group_w) - group_w  # weight of the groups above each group
    frac = np.clip((q * w.sum() - before) / group_w, 0.0, 1.0)
    out = np.empty(s.size)
    out[order] = frac[group]
    return out


def _f_beta(precision: float, recall: float, beta: float) -> float:
    if precision <= 0.0 or recall <= 0.0:
        return 0.0
    b2 = beta * beta
    return float((1 + b2) * precision * recall / (b2 * precision + recall))


def f_beta_at_quantile(
    scores, labels, q: float = 0.1, beta: float = 0.5, hack_share: float | None = None
) -> float:
    """F_beta of "hack" predicted for exactly the top q of rollouts by score.

    Scores tied at the boundary get fractional credit (`top_q_fraction`), so
    an all-tied score routes q of the rows at the base rate: precision = the
    hack share, recall = q.

    hack_share: evaluate as if hacks were this share of rollouts (rows are
    weighted hack_share / n_hack and (1 - hack_share) / n_clean for both the
    routed capacity and the precision). A balanced pool with q = 0.1 otherwise
    caps F0.5 near 0.56 (see `f_beta_ceiling`); GRPO's hack share starts near
    a few percent.
    """
    s, y = _check(scores, labels)
    w = _weights(y, hack_share)
    routed = top_q_fraction(s, q, w)
    precision = float((routed * w)[y].sum() / (routed * w).sum())
    recall = float(routed[y].sum() / y.sum())
    return _f_beta(precision, recall, beta)


def f_beta_ceiling(labels, q: float = 0.1, beta: float = 0.5, hack_share: float | None = None):
    """The best `f_beta_at_quantile` any score can reach on these labels.

    A perfect ranking (every hack above every clean) maximises the routed
    hacks, and precision and recall both grow with them: with p the hack
    share (by weight), precision = min(1, p / q) and recall = min(1, q / p).
    If a random direction's band reaches this value, F_beta cannot tell a
    real direction from a random one.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"f_beta_ceiling: q must be in (0, 1), got {q}")
    _, y = _check(np.zeros(np.asarray(labels).size), labels)
    _weights(y, hack_share)  # checks hack_share
    p = float(y.mean()) if hack_share is None else float(hack_share)
    return _f_beta(min(1.0, p / q), min(1.0, q / p), beta)


def _group_rows(groups, n: int):
    """(order, starts, sizes, inverse): the rows of group k are order[starts[k]:][:sizes[k]]."""
    g = np.arange(n) if groups is None else np.asarray(groups).ravel()
    if g.size != n:
        raise ValueError(f"metrics: {n} scores but {g.size} group ids")
    _, inverse = np.unique(g, return_inverse=True)
    inverse = inverse.ravel()
    sizes = np.bincount(inverse)
    return np.argsort(inverse, kind="stable"), np.cumsum(sizes) - sizes, sizes, inverse


def bootstrap_ci(
    fn: Callable, scores, labels, *, groups, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of fn(scores, labels) over resampled groups (cluster bootstrap).

    groups: one id per row (the problem it was sampled on). Rollouts of one
    problem are near duplicates, so whole problems are drawn with
    replacement and bring all their rows; resampling rows instead would treat
    16 rollouts of a problem as 16 independent samples and give a CI up to
    sqrt(16) times too narrow. Problems are drawn separately from two strata, by
    their majority label (hack share >= 1/2 or not, the rule of
    `split_by_group`), so every resample holds both classes when both strata
    exist; a resample that still lacks a class is redrawn (more redraws than
    n resamples raises). groups=None says the rows are independent: each row
    is its own group, i.e. hacks and cleans are resampled separately.
    """
    s, y = _check(scores, labels)
    order, starts, sizes, inverse = _group_rows(groups, s.size)
    hack_major = np.bincount(inverse, weights=y) / sizes >= 0.5
    strata = [k for k in (np.flatnonzero(hack_major), np.flatnonzero(~hack_major)) if k.size]
    rng = np.random.default_rng(seed)
    stats: list[float] = []
    redraws = 0
    while len(stats) < n:
        drawn = np.concatenate([rng.choice(k, k.size) for k in strata])
        lens = sizes[drawn]
        offsets = np.cumsum(lens) - lens
        idx = order[np.repeat(starts[drawn] - offsets, lens) + np.arange(lens.sum())]
        if y[idx].all() or not y[idx].any():
            redraws += 1
            if redraws > n:
                raise ValueError(
                    f"bootstrap_ci: more than {n} resamples lacked a class; "
                    f"{len(sizes)} groups rarely hold both"
                )
            continue
        stats.append(fn(s[idx], y[idx].astype(int)))
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


def band_verdict(value: float, band_p95: float, ceiling: float, n_rows: int) -> str:
    """BEATS, DOES_NOT_BEAT or CANNOT_DISCRIMINATE for a metric value against the band.

    When the metric's ceiling is at or below the band's p95, no direction can
    beat the band and "does not beat" would be no evidence of anything, so
    the verdict is CANNOT_DISCRIMINATE. "At" means within the rounding of
    values computed as ratios of sums of n_rows terms of magnitude <= 1
    (n_rows float64 epsilons).
    """
    tol = n_rows * np.finfo(np.float64).eps
    if ceiling <= band_p95 + tol:
        return CANNOT_DISCRIMINATE
    return BEATS if value > band_p95 + tol else DOES_NOT_BEAT
