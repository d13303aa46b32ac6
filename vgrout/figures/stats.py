"""Paired tests over seeds, as the preregistration (docs/preregistration.md) fixes them.

numpy only. A comparison "A vs B" is summarised by the per-seed differences
d_s = metric(A, s) - metric(B, s) (a seed fixes init, prompt order and sampling
in both arms, so the pairing removes the seed's own luck):

- `sign_flip_p`: the exact paired permutation test: under H0 (no arm effect)
  each d_s is as likely to carry either sign, so the observed mean is ranked
  among the means of all 2^n sign vectors. Exact, no normality assumed; with
  n seeds the smallest one-sided p is 2^-n, which is why a design with too few
  seeds cannot reject anything (`min_p`).
- `paired_ci`: the t interval of the mean difference over seeds.
- `holm`: Holm's step-down adjustment over one family of comparisons.
- `equivalence_p`: two one-sided sign-flip tests against a margin set in
  advance, the only way a comparison can end "equivalent" rather than
  "not shown".
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ALTERNATIVES = ("less", "greater", "two-sided")

T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
}  # fmt: skip
"""Two-sided 95% quantiles of Student's t by degrees of freedom (normal's 1.96 beyond 30)."""

MAX_EXACT = 20
"""Largest n for the exact test (2^20 sign vectors); beyond it a caller must subsample."""


def _diffs(d: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(d, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("stats: no paired differences (no seed in common?)")
    if not np.isfinite(x).all():
        raise ValueError(f"stats: paired differences contain NaN or inf: {x.tolist()}")
    return x


def sign_flip_p(d: Sequence[float] | np.ndarray, alternative: str = "less") -> float:
    """Exact p of the mean of `d` under random sign flips.

    alternative: "less" (A below B), "greater", or "two-sided" (|mean| as large).
    Sign vectors whose mean equals the observed one count as at least as
    extreme; equality is judged within the rounding of summing n terms.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"sign_flip_p: alternative must be one of {ALTERNATIVES}")
    x = _diffs(d)
    n = x.size
    if n > MAX_EXACT:
        raise ValueError(f"sign_flip_p: {n} differences; the exact test stops at {MAX_EXACT}")
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1  # [2^n, n]
    means = (1 - 2 * bits) @ x / n  # [2^n]; row 0 is the observed signs
    obs = float(x.mean())
    tol = 4 * n * np.finfo(np.float64).eps * max(float(np.abs(x).max()), 1e-300)
    if alternative == "less":
        hits = means <= obs + tol
    elif alternative == "greater":
        hits = means >= obs - tol
    else:
        hits = np.abs(means) >= abs(obs) - tol
    return float(hits.mean())


def equivalence_p(d: Sequence[float], margin: float) -> float:
    """Two one-sided tests (TOST) that the mean difference lies within (-margin, +margin).

    Each side is the exact sign-flip test of the shifted differences: that
    d + margin is centred above 0 and that d - margin is centred below 0. The
    larger p is the test's p; a small one says "equivalent within the margin",
    which a test that merely fails to reject a difference can never say.
    """
    if not margin > 0:
        raise ValueError(f"equivalence_p: margin must be > 0, got {margin}")
    x = _diffs(d)
    return max(sign_flip_p(x + margin, "greater"), sign_flip_p(x - margin, "less"))


def min_p(n: int, alternative: str = "less") -> float:
    """The smallest p the exact sign-flip test can give with n nonzero differences."""
    return (2.0 if alternative == "two-sided" else 1.0) / 2.0**n


def t975(dof: int) -> float:
    if dof < 1:
        raise ValueError(f"t975: degrees of freedom must be >= 1, got {dof}")
    return T975.get(dof, 1.96)


def paired_ci(d: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t interval of the mean difference (nan bounds for n = 1)."""
    x = _diffs(d)
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    half = t975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def holm(p: Sequence[float]) -> list[float]:
    """Holm-adjusted p values (monotone step-down, capped at 1), in the input's order."""
    ps = np.asarray(p, dtype=np.float64)
    if ps.size == 0:
        return []
    if not ((ps >= 0) & (ps <= 1)).all():
        raise ValueError(f"holm: p values must lie in [0, 1], got {ps.tolist()}")
    order = np.argsort(ps, kind="mergesort")
    k = ps.size
    adj = np.maximum.accumulate((k - np.arange(k)) * ps[order])
    out = np.empty(k)
    out[order] = np.minimum(adj, 1.0)
    return out.tolist()
