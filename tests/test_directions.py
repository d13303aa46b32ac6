"""Directions: planted-signal recovery, Haar placebo, the oracle's train-only fit, scoring."""

from types import SimpleNamespace

import pytest
import torch
from helpers import rounding_tol

from vgrout.directions.capture import _find_lora
from vgrout.directions.extract import (
    extract_directions,
    haar_direction,
    mean_diff_direction,
    oracle_direction,
    score,
    t_stat_direction,
    unit_rows,
)

torch.set_num_threads(1)


def _planted(n=64, rows=3, width=16, noise=1.0, shift=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = unit_rows(torch.randn(rows, width, generator=g))
    clean = torch.randn(n, rows, width, generator=g) * noise
    hack = clean + shift * v + 0.3 * torch.randn(n, rows, width, generator=g)
    return hack, clean, v


def _row_cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def _assert_unit_rows(d):
    """Rows normalised in float32 over their width: one reduction's rounding from 1."""
    torch.testing.assert_close(
        d.norm(dim=-1),
        torch.ones(d.shape[0]),
        atol=rounding_tol(1.0, d.dtype, width=d.shape[-1]),
        rtol=0,
    )


def test_mean_diff_recovers_planted_direction_per_row():
    hack, clean, v = _planted()
    d = mean_diff_direction(hack, clean)
    _assert_unit_rows(d)
    assert (_row_cos(d, v) > 0.9).all()


def test_t_stat_downweights_noisy_coordinates():
    hack, clean, v = _planted(n=128)
    v[:, 0] = 0.0  # the signal avoids coordinate 0 ...
    v = unit_rows(v)
    g = torch.Generator().manual_seed(1)
    hack = clean + 0.5 * v + 0.1 * torch.randn(128, 3, 16, generator=g)
    hack[:, :, 0] += 3.0 * torch.randn(128, 3, generator=g)
    t = t_stat_direction(hack, clean)  # ... whose large, noisy difference the mean keeps
    assert (_row_cos(t, v) > 0.9).all()
    assert (_row_cos(t, v) > _row_cos(mean_diff_direction(hack, clean), v)).all()


def test_extraction_through_the_model_recovers_a_planted_direction(planted_char_lm):
    """Hack sides carry MARK where clean sides carry BLANK: layer-0 q moves along A·w."""
    model, tok, w = planted_char_lm
    g = torch.Generator().manual_seed(2)
    alphabet = "abcdefghij +-=()"
    pairs = []
    for i in range(12):
        body = [alphabet[j] for j in torch.randint(len(alphabet), (20,), generator=g)]
        at = torch.randperm(20, generator=g)[:4].tolist()
        hack = "".join("#" if k in at else c for k, c in enumerate(body))
        clean = "".join("_" if k in at else c for k, c in enumerate(body))
        pairs.append(SimpleNamespace(prompt=f"problem {i}", hack=hack, clean=clean))
    dirs = extract_directions(model, tok, pairs, ["bottleneck", "resid"], batch_size=5)
    q0 = _find_lora(model)["layers.0.self_attn.q_proj"]
    norm_w = w.to(q0.base_layer.weight.dtype)  # RMSNorm(10 w) is parallel to w (unit gain)
    planted = (q0.lora_A["deployed"].weight @ norm_w).detach()  # [r]
    cos = float(_row_cos(dirs["bottleneck"][0], planted))
    assert cos > 0.9, cos
    assert dirs["resid"].shape == (2, 64)


def test_haar_rows_are_unit_seeded_and_respect_widths():
    a = haar_direction((5, 8), seed=3, widths=[8, 4, 8, 2, 8])
    _assert_unit_rows(a)
    assert torch.equal(a, haar_direction((5, 8), seed=3, widths=[8, 4, 8, 2, 8]))
    assert not torch.equal(a, haar_direction((5, 8), seed=4, widths=[8, 4, 8, 2, 8]))
    assert (a[1, 4:] == 0).all() and (a[3, 2:] == 0).all()


class _SpyLabels(list):
    """Labels that fail the test if any index outside `allowed` is read."""

    def __init__(self, values, allowed):
        super().__init__(values)
        self.allowed = set(allowed)

    def __getitem__(self, i):
        assert i in self.allowed, f"oracle read the label of test row {i}"
        return super().__getitem__(i)

    def __iter__(self):
        raise AssertionError("oracle iterated over every label, test rows included")


def test_oracle_never_reads_test_split_labels():
    hack, clean, _ = _planted(n=40)
    feats = torch.cat([hack, clean])
    labels = [1] * 40 + [0] * 40
    split = torch.zeros(80, dtype=torch.bool)
    split[::2] = True  # even rows train
    train_rows = torch.nonzero(split).flatten().tolist()
    d = oracle_direction(feats, _SpyLabels(labels, train_rows), split)
    flipped = [1 - y if not split[i] else y for i, y in enumerate(labels)]
    assert torch.equal(d, oracle_direction(feats, flipped, split))  # test labels: no influence
    train_flipped = [1 - y if split[i] else y for i, y in enumerate(labels)]
    assert not torch.allclose(d, oracle_direction(feats, train_flipped, split))


def test_oracle_ignores_test_rows_features_and_recovers_signal():
    hack, clean, v = _planted(n=40, shift=3.0)
    feats = torch.cat([hack, clean])
    labels = [1] * 40 + [0] * 40
    split = torch.arange(80) % 2 == 0
    d = oracle_direction(feats, labels, split)
    assert (_row_cos(d, v) > 0.9).all()
    poisoned = feats.clone()
    poisoned[~split] = 1e3
    assert torch.equal(d, oracle_direction(poisoned, labels, split))


def test_oracle_refuses_a_one_class_train_split():
    feats = torch.randn(6, 2, 3)
    with pytest.raises(ValueError, match="both classes"):
        oracle_direction(feats, [1, 1, 1, 0, 0, 0], [True, True, True, False, False, False])


def test_score_is_sum_over_rows_of_dot_products():
    feats = torch.randn(4, 3, 5)
    d = torch.randn(3, 5)
    expected = torch.stack([sum(feats[b, r] @ d[r] for r in range(3)) for b in range(4)])
    # a float32 sum of 15 products may cancel: bound by the size of the products
    tol = rounding_tol((feats.abs() * d.abs()).sum((1, 2)), width=15)
    torch.testing.assert_close(score(feats, d), expected, atol=tol, rtol=0)
    with pytest.raises(ValueError, match="do not match"):
        score(feats, torch.randn(2, 5))


def test_paired_directions_check_shapes():
    with pytest.raises(ValueError, match="paired"):
        mean_diff_direction(torch.randn(4, 2, 3), torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        t_stat_direction(torch.randn(1, 2, 3), torch.randn(1, 2, 3))
