"""Seed summaries and first-hack steps used by the figures."""

import math

import pandas as pd

from vgrout.figures.tables import ci95, first_step_above


def test_ci95_uses_t_over_seeds():
    v = pd.Series([0.1, 0.3, 0.5])
    sd = v.std(ddof=1)
    assert math.isclose(ci95(v), 4.303 * sd / math.sqrt(3))


def test_ci95_falls_back_to_binomial_for_one_seed():
    assert math.isclose(ci95(pd.Series([0.5]), pd.Series([100])), 1.96 * 0.05)


def test_first_step_above_uses_a_rolling_mean():
    steps = pd.DataFrame(
        {"arm": "a", "seed": 0, "step": range(1, 11), "hack": [0, 0, 1, 0, 0, 1, 1, 1, 1, 1]}
    )
    got = first_step_above(steps, threshold=0.6, window=3)
    assert got["first_step"].tolist() == [7]  # steps 5-7: 0, 1, 1
    never = first_step_above(steps.assign(hack=0.0), threshold=0.5)
    assert never["first_step"].tolist() == [None]
