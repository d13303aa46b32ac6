"""How many seeds a comparison needs: power of the exact sign-flip test and of its TOST.

``python -m vgrout.figures.power --sd 0.092 --seeds 8 16 24 --holm 5 --margin 0.05``

A planned comparison is the mean of n paired differences d_s (one per seed).
Power is simulated, not taken from a normal formula, because the test is the
exact sign-flip test (`stats.sign_flip_p`), whose smallest p is 2^-n and
whose steps matter at 8-16 seeds: each simulated grid draws n differences
from a normal with the given mean and the SD observed in earlier grids, and
counts how often the test rejects at alpha / holm (the first step of Holm's
correction over `holm` comparisons, the most a comparison must clear).

- `detectable_effect`: the smallest true effect the one-sided test finds with
  the asked power;
- `equivalence_power`: how often two one-sided tests show "equivalent within
  +-margin" when the true effect is `effect` (0 by default).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from vgrout import cli
from vgrout.figures import stats


def rejection_rate(effect: float, sd: float, n: int, alpha: float, sims: int, seed: int) -> float:
    """Share of simulated n-seed grids whose one-sided ("less") sign-flip p <= alpha."""
    rng = np.random.default_rng(seed)
    d = rng.normal(-abs(effect), sd, size=(sims, n))
    return float(np.mean([stats.sign_flip_p(row, "less") <= alpha for row in d]))


def detectable_effect(sd: float, n: int, alpha: float = 0.05, holm: int = 1, power: float = 0.8,
                      sims: int = 400, seed: int = 0) -> float:  # fmt: skip
    """Smallest |effect| (to 0.005) found with `power` by the one-sided test at alpha / holm.

    Bisection over the effect; the same random draws for every effect (common
    random numbers), so the rate rises with the effect and the search is stable.
    """
    level = alpha / holm
    if stats.min_p(n, "less") > level:
        return float("inf")
    lo, hi = 0.0, 6.0 * sd
    while hi - lo > 0.005:
        mid = (lo + hi) / 2
        if rejection_rate(mid, sd, n, level, sims, seed) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def equivalence_power(sd: float, n: int, margin: float, alpha: float = 0.05, holm: int = 1,
                      effect: float = 0.0, sims: int = 400, seed: int = 0) -> float:  # fmt: skip
    """Share of simulated grids in which the TOST shows equivalence within +-margin."""
    rng = np.random.default_rng(seed)
    d = rng.normal(effect, sd, size=(sims, n))
    level = alpha / holm
    return float(np.mean([stats.equivalence_p(row, margin) <= level for row in d]))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgrout.figures.power",
                                 description=__doc__.split("\n")[0])  # fmt: skip
    ap.add_argument("--sd", type=float, required=True, help="SD of the paired differences")
    ap.add_argument("--seeds", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--holm", type=int, default=1, help="comparisons in the Holm family")
    ap.add_argument("--power", type=float, default=0.8)
    ap.add_argument("--margin", type=float, default=None, help="equivalence margin")
    ap.add_argument("--sims", type=int, default=400)
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    print(f"sd {a.sd}, alpha {a.alpha} / {a.holm} (Holm's first step), power {a.power}")
    for n in a.seeds:
        effect = detectable_effect(a.sd, n, a.alpha, a.holm, a.power, a.sims)
        line = f"{n:3d} seeds: detectable effect {effect:.3f}"
        if a.margin:
            p = equivalence_power(a.sd, n, a.margin, a.alpha, a.holm, sims=a.sims)
            line += f"; P(equivalent within +-{a.margin:g} | no effect) {p:.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m vgrout.figures.power"))
