"""Inits: the directions each block starts from, checked against independent
computations (SVDs of W, pair statistics captured one unpadded row at a time)."""

from __future__ import annotations

import pytest
import torch
from test_adapters_support import PAIRS, ByteTokenizer, independent_deltas, tiny_qwen3

from vgrout.adapters import attach_routed_adapters
from vgrout.names import INITS

R = 4
MODULES = ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj")


def layer(model, name):
    return dict(model.named_modules())[f"base_model.model.model.layers.0.{name}"]


def factors(model, name, block):
    lyr = layer(model, name)
    return lyr.lora_A[block].weight.detach().double(), lyr.lora_B[
        block
    ].weight.detach().double()  # [r, in], [out, r]


@pytest.fixture(scope="module")
def deltas():
    return independent_deltas(tiny_qwen3(), ByteTokenizer(), PAIRS, "")


def attach(init):
    return attach_routed_adapters(
        tiny_qwen3(), r=R, init=init, pairs=PAIRS, tokenizer=ByteTokenizer()
    )


def unit_cols(x):
    return x / x.norm(dim=0, keepdim=True)


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
            torch.testing.assert_close(
                a.norm(dim=1), torch.ones(R, dtype=torch.float64), atol=1e-6, rtol=0
            )
            torch.testing.assert_close(
                b.norm(dim=0), torch.ones(R, dtype=torch.float64), atol=1e-6, rtol=0
            )


def test_pissa_takes_even_components_deployed_odd_quarantine():
    model = attach("pissa")
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        s = torch.linalg.svdvals(w)
        for block, start in (("deployed", 0), ("quarantine", 1)):
            a, b = factors(model, name, block)
            # u_i^T W v_i = s_i for matched singular pairs (signs consistent)
            torch.testing.assert_close(
                torch.diagonal(b.T @ w @ a.T), s[start : 2 * R : 2], rtol=1e-5, atol=0
            )


def test_corda_uses_svd_of_W_times_root_of_pair_second_moment(deltas):
    model = attach("corda")
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        dlt = deltas[f"model.layers.0.{name}"]
        c = dlt.T @ dlt / len(dlt)
        c = c + 1e-3 * torch.trace(c) / c.shape[0] * torch.eye(c.shape[0], dtype=c.dtype)
        ev, evec = torch.linalg.eigh(c)
        u, s, vh = torch.linalg.svd(w @ (evec * ev.sqrt()) @ evec.T)
        c_inv_half = (evec / ev.sqrt()) @ evec.T
        for block, start in (("deployed", 0), ("quarantine", 1)):
            a, b = factors(model, name, block)
            cos_b = (b * u[:, start : 2 * R : 2]).sum(0).abs()
            torch.testing.assert_close(cos_b, torch.ones(R, dtype=torch.float64), atol=1e-5, rtol=0)
            want_a = unit_cols((vh[start : 2 * R : 2] @ c_inv_half).T).T
            # the pairing of each A row with its B column keeps the component's sign
            sign = torch.sign((b * u[:, start : 2 * R : 2]).sum(0))
            torch.testing.assert_close(a, want_a * sign[:, None], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "init,seeded,other",
    [("scorda", "quarantine", "deployed"), ("scorda_rev", "deployed", "quarantine")],
)
def test_scorda_seed_present_in_one_block_absent_from_the_other(init, seeded, other, deltas):
    model = attach(init)
    for name in MODULES:
        w = layer(model, name).base_layer.weight.detach().double()
        mean = deltas[f"model.layers.0.{name}"].mean(0)
        u_in = mean / mean.norm()
        u_out = w @ u_in / (w @ u_in).norm()
        a_s, b_s = factors(model, name, seeded)
        a_o, b_o = factors(model, name, other)
        assert float(a_s[0] @ u_in) > 1 - 1e-5, f"{name}: seed missing from {seeded} A"
        assert float(b_s[:, 0] @ u_out) > 1 - 1e-5, f"{name}: seed missing from {seeded} B"
        assert (a_o @ u_in).abs().max() < 1e-5, f"{name}: seed leaks into {other} A"
        assert (u_out @ b_o).abs().max() < 1e-5, f"{name}: seed leaks into {other} B"
        assert (a_s[1:] @ u_in).abs().max() < 1e-5
        # all 2r input directions form one orthonormal set
        a_all = torch.cat([a_s, a_o])
        torch.testing.assert_close(
            a_all @ a_all.T, torch.eye(2 * R, dtype=torch.float64), atol=1e-5, rtol=0
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
        span = torch.linalg.qr(torch.cat([a_q[:1], top]).T).Q  # [in, 2r]
        residual = a_d.T - span @ (span.T @ a_d.T)
        assert residual.norm() < 1e-5


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
