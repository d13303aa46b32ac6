"""The preregistered tests: exact sign-flip p, paired t interval, Holm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vgrout.figures import stats


def _brute_p(d, alternative):
    obs, hits, total = np.mean(d), 0, 0
    for signs in itertools.product((1, -1), repeat=len(d)):
        m = np.mean(np.multiply(signs, d))
        total += 1
        if alternative == "less":
            hits += m <= obs + 1e-12
        elif alternative == "greater":
            hits += m >= obs - 1e-12
        else:
            hits += abs(m) >= abs(obs) - 1e-12
    return hits / total


def _exact_p(decimals):
    from fractions import Fraction

    d = [Fraction(x) for x in decimals]
    obs = sum(d) / len(d)
    means = [sum(s * x for s, x in zip(signs, d)) / len(d)
             for signs in itertools.product((1, -1), repeat=len(d))]  # fmt: skip
    return {
        "less": sum(m <= obs for m in means) / len(means),
        "greater": sum(m >= obs for m in means) / len(means),
        "two-sided": sum(abs(m) >= abs(obs) for m in means) / len(means),
    }


def test_sign_flip_matches_enumeration():
    rng = np.random.default_rng(0)
    for n in (1, 3, 6, 8):
        d = rng.normal(-0.1, 0.2, n)
        for alt in stats.ALTERNATIVES:
            assert stats.sign_flip_p(d, alt) == pytest.approx(_brute_p(d, alt), abs=0)


def test_sign_flip_extremes_and_ties():
    assert stats.sign_flip_p([-0.1] * 8, "less") == stats.min_p(8) == 1 / 256
    assert stats.sign_flip_p([-0.1] * 8, "two-sided") == stats.min_p(8, "two-sided")
    assert stats.sign_flip_p([-0.1] * 8, "greater") == 1.0
    assert stats.sign_flip_p([1.0, 2.0, 3.0], "greater") == 1 / 8
    assert stats.sign_flip_p([0.0, 0.0], "less") == 1.0  # no effect at all
    # sign vectors whose mean equals the observed one in exact arithmetic count as
    # extreme, although float sums differ in the last bits (rates are k/400)
    d = [0.1, 0.2, -0.3]
    exact = _exact_p(["0.1", "0.2", "-0.3"])
    assert {alt: stats.sign_flip_p(d, alt) for alt in exact} == exact
    with pytest.raises(ValueError, match="NaN"):
        stats.sign_flip_p([0.1, float("nan")])


def test_paired_ci_is_the_t_interval():
    m, lo, hi = stats.paired_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.303 / math.sqrt(3), rel=1e-12)
    assert m - lo == pytest.approx(hi - m, rel=1e-12)
    assert all(math.isnan(v) for v in stats.paired_ci([0.2])[1:])


@pytest.mark.parametrize("dof", range(1, 31))
def test_t_table_holds_95_percent(dof):
    """Integrate Student's t density over [-q, q]; the table rounds q to 3 decimals,
    which moves the mass by at most 2 * density(q) * 0.0005."""
    q = stats.t975(dof)
    x = np.linspace(-q, q, 200_001)
    c = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
    f = c * (1 + x**2 / dof) ** (-(dof + 1) / 2)
    mass = float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(x)))
    assert abs(mass - 0.95) <= 2 * f[-1] * 0.0005 + 1e-7


def test_holm_step_down():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_equivalence_p_is_small_only_when_every_difference_sits_inside_the_margin():
    from vgrout.figures.stats import equivalence_p

    assert equivalence_p([0.0] * 8, 0.05) == pytest.approx(1 / 256)
    assert equivalence_p([0.01, -0.02, 0.0, 0.02, -0.01, 0.0, 0.01, -0.01], 0.05) < 0.01
    assert equivalence_p([0.2, -0.2, 0.1, -0.1, 0.15, -0.15, 0.0, 0.05], 0.05) > 0.2
    assert equivalence_p([0.06] * 8, 0.05) == 1.0, "all outside the margin: no equivalence"
    with pytest.raises(ValueError, match="margin must be > 0"):
        equivalence_p([0.0], 0.0)


def test_a_comparison_with_a_margin_ends_lower_equivalent_or_undecided():
    import pandas as pd

    from vgrout.figures.ablation import test_table

    def rows(arm, vals):
        return [dict(arm=arm, seed=s, split="iid", view="deployed", ships=True, step=1, hack=v,
                     solve=0.5, n=10) for s, v in enumerate(vals)]  # fmt: skip

    base = [0.3, 0.2, 0.25, 0.35, 0.3, 0.2, 0.28, 0.22]
    seeds = pd.DataFrame(
        rows("b", base)
        + rows("lower", [v - 0.15 for v in base])
        + rows("same", [v + e for v, e in zip(base, [0.01, -0.01, 0, 0.01, -0.01, 0, 0.005, -0.005])])
        + rows("noisy", [v + e for v, e in zip(base, [0.2, -0.2, 0.1, -0.1, 0.15, -0.15, 0, 0.05])])
    )  # fmt: skip
    comps = [dict(id=k, a=k, b="b", metric="hack", sided="less", family=k, margin=0.05)
             for k in ("lower", "same", "noisy")]  # fmt: skip
    t = test_table(seeds, comps).set_index("id")
    assert t.loc["lower", "verdict"] == "lower"
    assert t.loc["same", "verdict"] == "equivalent within +-0.05"
    assert t.loc["noisy", "verdict"] == "undecided"
    plain = test_table(seeds, [{k: v for k, v in comps[2].items() if k != "margin"}])
    assert "p_equiv" not in plain.columns and plain["verdict"].iloc[0] == "not supported"


def test_power_grows_with_seeds_and_a_design_that_cannot_reject_detects_nothing():
    from vgrout.figures.power import detectable_effect, equivalence_power, rejection_rate

    assert detectable_effect(0.1, 4, alpha=0.05) == float("inf"), "4 seeds: min p 1/16 > 0.05"
    small, large = detectable_effect(0.1, 6, sims=150), detectable_effect(0.1, 10, sims=150)
    assert large < small < 0.6
    assert (
        rejection_rate(0.0, 0.1, 8, 0.05, sims=400, seed=1) <= 0.05 + 3 * (0.05 * 0.95 / 400) ** 0.5
    )
    assert rejection_rate(small, 0.1, 6, 0.05, sims=150, seed=0) >= 0.8
    assert equivalence_power(0.01, 8, 0.05, sims=100) == 1.0
    assert equivalence_power(0.3, 8, 0.05, sims=100) < 0.05
