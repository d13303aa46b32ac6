"""Inits: the directions each block starts from, checked against independent
computations (SVDs of W, pair statistics captured one unpadded row at a time).

The pair statistics attach captures are first checked against the independent
capture; the factors are then checked against float64 computations from the
statistics attach used, so each check has a bound derived from its magnitudes
(a float32 capture in one, float32 storage of float64 factors in the other)."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    PAIRS,
    ByteTokenizer,
    independent_pooled_inputs,
    init_statistics,
    model_tol,
    rounding_tol,
    stored_tol,
    tiny_qwen3,
)

from vgrout.adapters import attach_routed_adapters
from vgrout.names import INITS

R = 4
MODULES = ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj")
EPS32 = torch.finfo(torch.float32).eps


def layer(model, name):
    return dict(model.named_modules())[f"base_model.model.model.layers.0.{name}"]


def factors(model, name, block):
    lyr = layer(model, name)
    return lyr.lora_A[block].weight.detach().double(), lyr.lora_B[
        block
    ].weight.detach().double()  # [r, in], [out, r]


@pytest.fixture(scope="module")
def independent():
    """({module: [n_pairs, in] deltas}, {module: max |input|}), one unpadded row at a time."""
    return independent_pooled_inputs(tiny_qwen3(), ByteTokenizer(), PAIRS, "")


@pytest.fixture(scope="module")
def stats():
    """{module: [n_pairs, in] deltas} as attach captures them for the pair inits."""
    model = attach_routed_adapters(tiny_qwen3(), r=R, init="gaussian")
    return {f"model.{k}": v for k, v in init_statistics(model, PAIRS, ByteTokenizer()).items()}


def attach(init):
    return attach_routed_adapters(
        tiny_qwen3(), r=R, init=init, pairs=PAIRS, tokenizer=ByteTokenizer()
    )


def unit_cols(x):
    return x / x.norm(dim=0, keepdim=True)


def test_pair_statistics_equal_an_independent_capture(independent, stats):
    """attach pools padded batches; the same float32 model one unpadded row at a time agrees."""
    deltas, scale = independent
    assert len(stats) == 2 * 7 and set(stats) <= set(deltas)
    for name, got in stats.items():
        # hack - clean: two pooled inputs, each a float32 computation through the model
        tol = 2 * model_tol(torch.tensor(scale[name]))["atol"]
        torch.testing.assert_close(got, deltas[name], atol=tol, rtol=0, msg=name)


@pytest.mark.parametrize("init", INITS)
def test_anchors_cancel_blocks_exactly(init):
    model = attach(init)
    for name in MODULES:
        for block in ("deployed", "quarantine"):
            a, b = factors(model, name, block)
            a0, b0 = factors(model, name, block + "_0")
            assert torch.equal(a0, a) and torch.equal(b0, -b)


@pytest.mark.parametrize("init", ["pissa", "corda", "scorda", "scorda_rev"])
def test_svd_inits_have_unit_rows_and_columns(init):
    model = attach(init)
    for name in MODULES:
        for block in ("deployed", "quarantine"):
            a, b = factors(model, name, block)
            tol = stored_tol(max(a.shape[1], b.shape[0]))
            torch.testing.assert_close(
                a.norm(dim=1), torch.ones(R, dtype=torch.float64), atol=tol, rtol=0
            )
            torch.testing.assert_close(
                b.norm(dim=0), torch.ones(R, dtype=torch.float64), atol=tol, rtol=0
            )


def test_pissa_takes_even_components_deployed_odd_quarantine():
    model = attach("pissa")
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        s = torch.linalg.svdvals(w)
        for block, start in (("deployed", 0), ("quarantine", 1)):
            a, b = factors(model, name, block)
            # u_i^T W v_i = s_i for matched singular pairs (signs consistent). Stored
            # u~ = u + du, v~ = v + dv: u~^T W v~ - s_i = s_i (du.u + v.dv) + O(u32^2 |W|),
            # since u^T W = s_i v^T: at most eps32 * s_i, plus the float64 SVDs' rounding.
            torch.testing.assert_close(
                torch.diagonal(b.T @ w @ a.T),
                s[start : 2 * R : 2],
                rtol=EPS32,
                atol=rounding_tol(s[0], torch.float64, depth=2, width=max(w.shape)),
            )


def test_corda_uses_svd_of_W_times_root_of_pair_second_moment(stats):
    model = attach("corda")
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        dlt = stats[f"model.layers.0.{name}"]
        c = dlt.T @ dlt / len(dlt)
        c = c + 1e-3 * torch.trace(c) / c.shape[0] * torch.eye(c.shape[0], dtype=c.dtype)
        ev, evec = torch.linalg.eigh(c)
        u, s, vh = torch.linalg.svd(w @ (evec * ev.sqrt()) @ evec.T)
        c_inv_half = (evec / ev.sqrt()) @ evec.T
        # Two float64 evaluations of W C^(1/2) and its SVD differ by at most dm; that
        # turns singular vector i by at most dm / gap_i (Wedin), gap_i the distance from
        # s_i to the other singular values (and to 0, the rectangular case), and a turn
        # t of v_i turns unit(v_i C^(-1/2)) by at most 2 t |C^(-1/2)| / |v_i C^(-1/2)|.
        width = max(w.shape)
        dm = rounding_tol(s[0], torch.float64, depth=3, width=width)
        gap = torch.stack([torch.cat([(s - x).abs()[s != x], x[None]]).min() for x in s])
        turn = dm / gap
        for block, start in (("deployed", 0), ("quarantine", 1)):
            a, b = factors(model, name, block)
            comp = slice(start, 2 * R, 2)
            cos_b = (b * u[:, comp]).sum(0).abs()
            atol_b = stored_tol(width) + float(turn[comp].max()) ** 2 / 2
            torch.testing.assert_close(
                cos_b, torch.ones(R, dtype=torch.float64), atol=atol_b, rtol=0
            )
            read = vh[comp] @ c_inv_half
            want_a = unit_cols(read.T).T
            spread = torch.linalg.matrix_norm(c_inv_half, 2) / read.norm(dim=1)
            atol_a = stored_tol(width) + float((2 * turn[comp] * spread).max())
            # the pairing of each A row with its B column keeps the component's sign
            sign = torch.sign((b * u[:, comp]).sum(0))
            torch.testing.assert_close(a, want_a * sign[:, None], atol=atol_a, rtol=0)


@pytest.mark.parametrize(
    "init,seeded,other",
    [("scorda", "quarantine", "deployed"), ("scorda_rev", "deployed", "quarantine")],
)
def test_scorda_seed_present_in_one_block_absent_from_the_other(init, seeded, other, stats):
    model = attach(init)
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        mean = stats[f"model.layers.0.{name}"].mean(0)
        u_in = mean / mean.norm()
        u_out = w @ u_in / (w @ u_in).norm()
        a_s, b_s = factors(model, name, seeded)
        a_o, b_o = factors(model, name, other)
        tol = stored_tol(max(w.shape))
        assert float(a_s[0] @ u_in) > 1 - tol, f"{name}: seed missing from {seeded} A"
        assert float(b_s[:, 0] @ u_out) > 1 - tol, f"{name}: seed missing from {seeded} B"
        assert (a_o @ u_in).abs().max() < tol, f"{name}: seed leaks into {other} A"
        assert (u_out @ b_o).abs().max() < tol, f"{name}: seed leaks into {other} B"
        assert (a_s[1:] @ u_in).abs().max() < tol
        # all 2r input directions form one orthonormal set
        a_all = torch.cat([a_s, a_o])
        torch.testing.assert_close(
            a_all @ a_all.T, torch.eye(2 * R, dtype=torch.float64), atol=tol, rtol=0
        )


def test_scorda_other_directions_come_from_W_top_singular_subspace():
    model = attach("scorda")
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        _, _, vh = torch.linalg.svd(w, full_matrices=False)
        top = vh[: 2 * R - 1]  # [2r-1, in]
        a_d, _ = factors(model, name, "deployed")
        # each deployed direction lies in span(u_in, top 2r-1 right singular vectors)
        a_q, _ = factors(model, name, "quarantine")
        basis = torch.cat([a_q[:1], top])  # [2r, in]; the seed row is the stored one
        span = torch.linalg.qr(basis.T).Q  # [in, 2r]
        residual = a_d.T - span @ (span.T @ a_d.T)
        # Stored rows move by u32 each (|dA_d|_F <= u32 sqrt(r)), and storing the seed
        # turns the span by at most u32 / sigma_min(basis): |residual|_F <= eps32 sqrt(r) /
        # sigma_min, plus float64 rounding.
        sigma_min = float(torch.linalg.svdvals(basis).min())
        bound = EPS32 * R**0.5 / sigma_min + rounding_tol(1.0, torch.float64, 2, w.shape[1])
        assert residual.norm() < bound, (float(residual.norm()), bound)


def test_pair_inits_refuse_missing_pairs_and_bad_ranks():
    with pytest.raises(ValueError, match="needs pairs"):
        attach_routed_adapters(tiny_qwen3(), r=R, init="scorda")
    with pytest.raises(ValueError, match="2\\*r"):
        attach_routed_adapters(tiny_qwen3(), r=20, init="pissa")
    with pytest.raises(ValueError, match="init must be one of"):
        attach_routed_adapters(tiny_qwen3(), r=R, init="lora")
    with pytest.raises(ValueError, match="pairs\\[0\\].hack"):
        bad = [type("P", (), {"prompt": "x", "hack": None, "clean": "y"})()]
        attach_routed_adapters(
            tiny_qwen3(), r=R, init="corda", pairs=bad, tokenizer=ByteTokenizer()
        )


def test_gaussian_init_is_seeded():
    a = attach_routed_adapters(tiny_qwen3(), r=R, init="gaussian", seed=5)
    b = attach_routed_adapters(tiny_qwen3(), r=R, init="gaussian", seed=5)
    c = attach_routed_adapters(tiny_qwen3(), r=R, init="gaussian", seed=6)
    sa, sb, sc = (
        dict((k, v) for k, v in m.state_dict().items() if "lora_" in k) for m in (a, b, c)
    )
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(torch.equal(sa[k], sc[k]) for k in sa)
