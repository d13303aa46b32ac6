"""Metrics: AUROC with ties, F-beta at the gate's tail, bootstrap CIs, the random band."""

import itertools

import numpy as np
import pytest

from vgrout.directions.metrics import auroc, bootstrap_ci, f_beta_at_quantile, random_band


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
    lo, hi = bootstrap_ci(auroc, s, y, n=300, seed=0)
    assert lo < auroc(s, y) < hi
    s2, y2 = sample(2000)
    lo2, hi2 = bootstrap_ci(auroc, s2, y2, n=300, seed=0)
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
        lo, hi = bootstrap_ci(auroc, s, labels, n=200, seed=k)
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
    # weights: hack 0.05, clean 0.2; q = 0.2 -> rows 9 (0.05) and 8 (0.2) are routed
    precision, recall = 0.05 / 0.25, 1 / 4
    expected = 1.25 * precision * recall / (0.25 * precision + recall)
    assert f_beta_at_quantile(scores, labels, q=0.2, hack_share=0.2) == pytest.approx(expected)
    # at the pool's own share the weighted rule routes the same rows as the plain one
    assert f_beta_at_quantile(scores, labels, q=0.25, hack_share=0.5) == pytest.approx(
        f_beta_at_quantile(scores, labels, q=0.25)
    )
