"""The router's zone logic, thresholds and masks, without a model."""

import random

import pytest
import torch

from vgrout.grpo.zones import (
    ScoreBuffer,
    oracle_zones,
    weighted_quantile,
    zone_masks,
    zones_from_scores,
)


def test_zone_masks_follow_the_keep_absorb_route_table():
    m, d = zone_masks(["keep", "absorb", "route"])
    assert m.tolist() == [0.0, 1.0, 1.0]
    assert d.tolist() == [0.0, 0.0, 1.0]


def test_unknown_zone_is_rejected_by_name():
    with pytest.raises(ValueError, match="'banana'"):
        zone_masks(["banana"])


def test_weighted_quantile_matches_unweighted_order_statistics():
    v = torch.arange(100, dtype=torch.float32)
    w = torch.ones(100)
    assert weighted_quantile(v, w, 0.1) == 9.0
    assert weighted_quantile(v, w, 0.9) == 89.0


def test_recency_weighting_moves_thresholds_toward_recent_scores():
    buf = ScoreBuffer(q=0.1, half_life=10, warmup=1)
    direction = torch.ones(1, 1)
    buf.add(torch.full((100, 1, 1), -5.0))  # old, low scores
    buf.add(torch.linspace(0, 1, 50).view(50, 1, 1))  # recent
    low, high = buf.thresholds(direction)
    assert low >= 0.0, "old scores (age >> half-life) should barely weigh"
    flat = ScoreBuffer(q=0.1, warmup=1)
    flat.add(torch.full((100, 1, 1), -5.0))
    flat.add(torch.linspace(0, 1, 50).view(50, 1, 1))
    assert flat.thresholds(direction)[0] == -5.0


def test_buffer_routes_nothing_during_warmup_and_tails_after():
    buf = ScoreBuffer(q=0.1, warmup=20)
    d = torch.ones(1, 1)
    buf.add(torch.randn(10, 1, 1))
    assert buf.thresholds(d) is None
    assert zones_from_scores(torch.tensor([9.0]), None, "absorb", False) == ["absorb"]
    buf.add(torch.arange(100, dtype=torch.float32).view(100, 1, 1))
    thr = buf.thresholds(d)
    zones = zones_from_scores(torch.tensor([-100.0, 50.0, 1000.0]), thr, "absorb", True)
    assert zones == ["keep", "absorb", "route"]
    assert zones_from_scores(torch.tensor([-100.0]), thr, "absorb", False) == ["absorb"]


def test_buffer_rescores_against_a_new_direction():
    buf = ScoreBuffer(q=0.1, warmup=1)
    buf.add(torch.randn(200, 2, 3, generator=torch.Generator().manual_seed(0)))
    a = buf.thresholds(torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    b = buf.thresholds(torch.tensor([[0, 0, 0], [0, 0, 10.0]]))
    assert b[1] > 3 * a[1]


def test_non_finite_scores_abort_with_a_message():
    with pytest.raises(FloatingPointError, match="non-finite"):
        zones_from_scores(torch.tensor([float("nan")]), (0.0, 1.0), "absorb", False)


def test_oracle_routes_hacks_and_placebo_routes_the_same_number():
    hacked = [True, False, True, False, False, True]
    z = oracle_zones(hacked, 1.0, "absorb", False, random.Random(0))
    assert z == ["route" if h else "absorb" for h in hacked]
    counts = []
    for seed in range(20):
        zp = oracle_zones(hacked, 1.0, "keep", True, random.Random(seed))
        counts.append(zp.count("route"))
        assert set(zp) <= {"route", "keep"}
    assert set(counts) == {3}


def test_partial_reveal_routes_a_subset_of_hacks():
    hacked = [True] * 400
    z = oracle_zones(hacked, 0.5, "absorb", False, random.Random(1))
    assert 150 < z.count("route") < 250
