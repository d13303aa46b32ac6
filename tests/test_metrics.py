"""Metrics: AUROC with ties, F-beta at the gate's tail and its ceiling, cluster bootstrap
CIs, the random band and the verdict against it."""

import itertools

import numpy as np
import pytest

from vgrout.directions.metrics import (
    BEATS,
    CANNOT_DISCRIMINATE,
    DOES_NOT_BEAT,
    auroc,
    band_verdict,
    bootstrap_ci,
    f_beta_at_quantile,
    f_beta_ceiling,
    random_band,
    top_q_fraction,
)

EPS = np.finfo(np.float64).eps


def _f(precision, recall, beta=0.5):
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def _pairwise_auroc(s, y):
    pos = [a for a, label in zip(s, y) if label == 1]
    neg = [b for b, label in zip(s, y) if label == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_equals_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    y = rng.integers(0, 2, 60)
    # both are one correctly rounded division of the same exact integers (half-counts)
    assert auroc(s, y) == _pairwise_auroc(s, y)


def test_auroc_perfect_reversed_and_constant():
    y = [0, 0, 1, 1]
    assert auroc([0, 1, 2, 3], y) == 1.0
    assert auroc([3, 2, 1, 0], y) == 0.0
    assert auroc([1, 1, 1, 1], y) == 0.5


def test_f_beta_predicts_the_top_q_tail():
    # 10 rows, q = 0.2 -> the two highest scores are predicted hack: one hack, one clean
    scores = np.arange(10.0)
    labels = np.array([0, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    precision, recall = 1 / 2, 1 / 4
    expected = 1.25 * precision * recall / (0.25 * precision + recall)
    assert f_beta_at_quantile(scores, labels, q=0.2) == pytest.approx(expected)
    assert f_beta_at_quantile(scores, 1 - labels, q=0.2) == pytest.approx(
        1.25 * 0.5 * (1 / 6) / (0.25 * 0.5 + 1 / 6)
    )


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(1)

    def sample(n):
        y = rng.integers(0, 2, n)
        return y + rng.normal(0, 1.5, n), y

    s, y = sample(80)
    lo, hi = bootstrap_ci(auroc, s, y, groups=None, n=300, seed=0)
    assert lo < auroc(s, y) < hi
    s2, y2 = sample(2000)
    lo2, hi2 = bootstrap_ci(auroc, s2, y2, groups=None, n=300, seed=0)
    assert hi2 - lo2 < (hi - lo) / 2


def test_random_band_is_calibrated_on_random_labels():
    """Haar directions on random labels: AUROC ~ 0.5, and 0.5 lies in most CIs."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(200, 4, 8))
    labels = rng.integers(0, 2, 200)
    band = random_band(feats, labels, n=200, seed=0, metric=auroc)
    assert abs(band["median"] - 0.5) < 0.03
    covered = 0
    for k in range(60):
        d = rng.normal(size=(4, 8))
        s = np.einsum("brw,rw->b", feats, d / np.linalg.norm(d, axis=1, keepdims=True))
        lo, hi = bootstrap_ci(auroc, s, labels, groups=None, n=200, seed=k)
        covered += lo <= 0.5 <= hi
    assert covered >= 0.85 * 60, covered


def test_random_band_f05_sits_at_the_base_rate():
    """No signal: precision ~ hack share, recall ~ q / hack share."""
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(400, 3, 6))
    labels = rng.integers(0, 2, 400)
    band = random_band(feats, labels, n=200, seed=1)
    p = labels.mean()
    precision, recall = p, 0.1
    chance = 1.25 * precision * recall / (0.25 * precision + recall)  # q = 0.1 of rows routed
    assert abs(band["median"] - chance) < 0.05
    assert band["p95"] > band["median"]


def test_a_planted_axis_beats_the_random_band_p95():
    """A planted signal on one coordinate lifts the oracle far above the band's p95."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 300)
    feats = rng.normal(size=(300, 2, 16))
    feats[:, 0, 0] += 3.0 * labels
    band = random_band(feats, labels, n=200, seed=0, metric=auroc)
    axis = np.zeros((2, 16))
    axis[0, 0] = 1.0
    assert auroc(np.einsum("brw,rw->b", feats, axis), labels) > band["p95"] + 0.1


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="scores but"):
        auroc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        f_beta_at_quantile([np.nan, 0.2], [1, 0])
    with pytest.raises(ValueError, match="0 \\(clean\\) or 1"):
        auroc([0.1, 0.2], [2, 0])


def test_f_beta_hack_share_reweights_the_tail_and_precision():
    # 4 hacks, 4 cleans; evaluated as if hacks were 20% of rollouts
    scores = np.array([9.0, 8, 7, 6, 5, 4, 3, 2])
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    # weights: hack 0.05, clean 0.2; q = 0.2 -> row 9 (0.05) and 0.15 of row 8's 0.2
    precision, recall = 0.05 / 0.2, 1 / 4
    expected = 1.25 * precision * recall / (0.25 * precision + recall)
    assert f_beta_at_quantile(scores, labels, q=0.2, hack_share=0.2) == pytest.approx(expected)
    # at the pool's own share the weighted rule routes the same rows as the plain one
    assert f_beta_at_quantile(scores, labels, q=0.25, hack_share=0.5) == pytest.approx(
        f_beta_at_quantile(scores, labels, q=0.25)
    )


def test_all_tied_scores_route_exactly_q_at_the_base_rate():
    """Every score tied: the routed q share holds hacks at the base rate, nothing more."""
    labels = np.r_[np.ones(6, int), np.zeros(14, int)]  # hack share 0.3
    tied = np.zeros(20)
    # q = 0.1 of 20 rows = 2 rows' worth, 30% of it hacks: precision 0.3, recall 0.6 / 6
    assert f_beta_at_quantile(tied, labels, q=0.1) == pytest.approx(_f(0.3, 0.1), rel=8 * EPS)
    # under a 10% hack share: precision 0.1, recall = q
    assert f_beta_at_quantile(tied, labels, q=0.1, hack_share=0.1) == pytest.approx(
        _f(0.1, 0.1), rel=8 * EPS
    )
    assert top_q_fraction(tied, 0.1) == pytest.approx(np.full(20, 0.1), rel=8 * EPS)


def test_top_q_fraction_routes_exactly_q_of_the_weight_whatever_the_ties():
    rng = np.random.default_rng(5)
    s = rng.integers(0, 6, 200).astype(float)  # tie groups of ~33 rows straddle every q
    w = rng.uniform(0.5, 2.0, 200)
    for q in (0.05, 0.1, 0.37):
        frac = top_q_fraction(s, q, w)
        # a sum of 200 terms of magnitude <= 2 * 200: rounding within 200 * 400 eps
        assert abs((frac * w).sum() - q * w.sum()) <= 200 * w.sum() * EPS
        assert ((frac >= 0) & (frac <= 1)).all()
        for v in np.unique(s):  # a tie group shares one fraction; higher scores go first
            assert np.ptp(frac[s == v]) == 0
            assert (frac[s > v] >= frac[s == v][0]).all()


def test_the_boundary_row_counts_by_the_share_of_it_inside_q():
    scores = np.arange(10.0)  # q = 0.25 of 10 rows = rows 9, 8 and half of row 7
    assert top_q_fraction(scores, 0.25).tolist() == [0] * 7 + [0.5, 1, 1]
    labels = np.array([0] * 7 + [1, 0, 1])
    precision, recall = 1.5 / 2.5, 1.5 / 2
    assert f_beta_at_quantile(scores, labels, q=0.25) == pytest.approx(
        _f(precision, recall), rel=8 * EPS
    )


def test_f_beta_ceiling_is_a_perfect_ranking_and_no_score_exceeds_it():
    labels = np.r_[np.ones(10, int), np.zeros(10, int)]
    # balanced, q = 0.1 < p: precision 1, recall 0.1 / 0.5
    assert f_beta_ceiling(labels, q=0.1) == pytest.approx(_f(1.0, 0.2), rel=8 * EPS)
    assert f_beta_ceiling(labels, q=0.1, hack_share=0.1) == 1.0  # q = p: all and only hacks
    assert f_beta_ceiling(labels, q=0.2, hack_share=0.1) == pytest.approx(_f(0.5, 1.0))
    rng = np.random.default_rng(6)
    for share in (None, 0.05, 0.1, 0.3):
        ceiling = f_beta_ceiling(labels, q=0.1, hack_share=share)
        perfect = labels.astype(float)  # hacks tied at 1, cleans tied at 0
        assert f_beta_at_quantile(perfect, labels, 0.1, hack_share=share) == pytest.approx(
            ceiling, rel=8 * EPS
        )
        for _ in range(50):
            s = rng.integers(0, 3, 20) + labels * rng.integers(0, 2)
            assert f_beta_at_quantile(s, labels, 0.1, hack_share=share) <= ceiling * (1 + 8 * EPS)


def test_cluster_bootstrap_of_duplicated_problems_is_the_bootstrap_of_the_problems():
    """16 identical rollouts per problem carry one problem's information, not 16."""
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(10, int), np.zeros(10, int)]
    s = y + rng.normal(0, 1.0, 20)
    groups = np.repeat([f"p{i:02d}" for i in range(20)], 16)
    s16, y16 = np.repeat(s, 16), np.repeat(y, 16)
    # AUROC of replicated rows is the same rational number, so the same float
    cluster = bootstrap_ci(auroc, s16, y16, groups=groups, n=300, seed=0)
    assert cluster == bootstrap_ci(auroc, s, y, groups=None, n=300, seed=0)
    rows = bootstrap_ci(auroc, s16, y16, groups=None, n=300, seed=0)
    assert rows[1] - rows[0] < (cluster[1] - cluster[0]) / 2  # the row CI is far too narrow


def test_cluster_bootstrap_keeps_both_classes_and_checks_its_groups():
    # every problem has a hack majority; a resample of only problem "a" has no clean
    s = np.array([3.0, 2.0, 1.0, 0.0, 2.5, 0.5, 1.5])
    y = np.array([1, 1, 1, 0, 1, 1, 0])
    groups = ["a", "a", "b", "b", "c", "c", "c"]
    lo, hi = bootstrap_ci(auroc, s, y, groups=groups, n=200, seed=0)  # auroc raises on one class
    assert 0.0 <= lo <= hi <= 1.0
    with pytest.raises(ValueError, match="group ids"):
        bootstrap_ci(auroc, s, y, groups=groups[:-1], n=10)


def test_band_verdict_says_cannot_discriminate_when_the_ceiling_is_at_the_band():
    assert band_verdict(0.9, 0.5, 1.0, 100) == BEATS
    assert band_verdict(0.5, 0.5, 1.0, 100) == DOES_NOT_BEAT
    assert band_verdict(0.556, 0.556, 0.556, 100) == CANNOT_DISCRIMINATE
    # the same value reached by two summation orders still counts as "at" the ceiling
    ceiling = f_beta_ceiling(np.r_[np.ones(52, int), np.zeros(48, int)], q=0.1)
    assert band_verdict(ceiling, ceiling * (1 - 4 * EPS), ceiling, 100) == CANNOT_DISCRIMINATE


def test_a_balanced_pool_with_separable_style_puts_the_band_at_the_ceiling():
    """The reviewer's case: random directions with a pure top tail reach the ceiling."""
    rng = np.random.default_rng(8)
    labels = np.r_[np.ones(60, int), np.zeros(60, int)]
    feats = rng.normal(size=(120, 2, 8)) + 6.0 * labels[:, None, None]  # every axis separates
    ceiling = f_beta_ceiling(labels, q=0.1)
    band = random_band(feats, labels, n=100, seed=0)
    assert band_verdict(ceiling, band["p95"], ceiling, 120) == CANNOT_DISCRIMINATE
