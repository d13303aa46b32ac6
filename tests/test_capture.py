"""Capture: pooling over completion tokens, the four sites, and the in-forward hook."""

import pytest
import torch
from helpers import CharTokenizer, model_tol, rounding_tol, tiny_model

from vgrout.adapters.layers import lora_layers, short_name
from vgrout.directions.capture import SITES, _find_lora, capture, capture_in_forward, capture_texts
from vgrout.lm.tokens import chat_prompt, encode, pool_completion

torch.set_num_threads(1)

PROMPTS = ["add two numbers", "reverse a list of words please", "x"]
COMPLETIONS = ["return a + b", "return w[::-1]", "def run_tests(): pass  # ok"]


def _batch(tok, idx):
    return encode(tok, [chat_prompt(tok, PROMPTS[i]) for i in idx], [COMPLETIONS[i] for i in idx])


def test_left_padded_row_equals_same_row_alone_at_every_site(char_lm):
    model, tok = char_lm
    together = capture(model, _batch(tok, [0, 1, 2]), SITES)
    for i in range(3):
        alone = capture(model, _batch(tok, [i]), SITES)
        for s in SITES:
            # 'grad' is a backward pass; the other sites read the forward
            tol = model_tol(alone[s][0], backward=s == "grad")
            torch.testing.assert_close(together[s][i], alone[s][0], **tol, msg=f"site {s}, row {i}")


def test_batched_gradient_equals_single_rollout_autograd_at_every_module():
    """Row i of one batched capture = that rollout's own NLL gradient, computed alone."""
    model, tok = tiny_model(seed=3, dtype=torch.float64), CharTokenizer()
    grads = capture(model, _batch(tok, [0, 1, 2]), ["grad"])["grad"]  # [3, modules, r]
    for i in range(3):
        single = _batch(tok, [i])
        for k, layer in enumerate(_find_lora(model).values()):
            expected = _single_row_pooled_grad(model, single, layer)
            # float32 precision although the model is float64: transformers computes
            # RoPE's angles in float32, and a left-padded row sits at other positions
            tol = model_tol(expected, dtype=torch.float32, backward=True)
            torch.testing.assert_close(grads[i, k], expected, **tol)


def test_gradient_matches_finite_difference_of_the_nll(norms_in_model_dtype):
    """pooled grad . v * n_completion = d/de NLL(z + e v on completion tokens)."""
    model, tok = tiny_model(seed=3, dtype=torch.float64), CharTokenizer()
    single = _batch(tok, [1])
    grads = capture(model, single, ["grad"])["grad"]
    layer = list(_find_lora(model).values())[5]
    v = torch.randn(
        layer.lora_A["deployed"].out_features,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    mask = single.completion_mask[..., None].double()  # [1, pos, 1]

    def fd(h):
        nll = [_row_nll(model, single, layer, sign * h * v * mask) for sign in (1, -1)]
        return (nll[0] - nll[1]) / (2 * h)

    predicted = float(grads[0, 5] @ v) * float(mask.sum())
    # A central difference errs by c h^2 + O(h^4), so fd(2h) - fd(h) = 3 c h^2 bounds the
    # truncation at h. Rounding adds up to two NLLs' rounding_tol over 2h: float64, the
    # norms included (norms_in_model_dtype); the positions, hence RoPE, are the same.
    h = 1e-3
    nll = torch.tensor(_row_nll(model, single, layer, 0 * v), dtype=torch.float64)
    bound = abs(fd(2 * h) - fd(h)) + model_tol(nll)["atol"] / h
    assert abs(fd(h) - predicted) < bound, (fd(h), predicted, bound)


def _row_nll(model, batch, layer, delta):
    """Mean completion NLL of a 1-row batch with `delta` added to one bottleneck output."""
    h = layer.lora_A["deployed"].register_forward_hook(lambda m, i, o: o + delta)
    try:
        with torch.no_grad():
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    finally:
        h.remove()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    m = batch.completion_mask[:, 1:].double()
    return float(-(logp * m).sum() / m.sum())


def _single_row_pooled_grad(model, batch, layer):
    """Gradient of one row's mean completion NLL at layer's bottleneck, pooled: [r]."""
    width = layer.lora_A["deployed"].out_features
    delta = torch.zeros(1, batch.input_ids.shape[1], width, dtype=torch.float64, requires_grad=True)
    h = layer.lora_A["deployed"].register_forward_hook(lambda m, i, o: o + delta)
    try:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    finally:
        h.remove()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    m = batch.completion_mask[:, 1:].double()
    (g,) = torch.autograd.grad(-(logp * m).sum() / m.sum(), delta)
    cm = batch.completion_mask[..., None].double()
    return ((g * cm).sum(1) / cm.sum(1))[0]


def test_bottleneck_and_adapter_out_are_A_x_and_scaled_B_A_x(char_lm):
    model, tok = char_lm
    batch = _batch(tok, [0, 1])
    name, layer = next(iter(_find_lora(model).items()))
    seen = {}
    h = layer.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0].detach()))
    try:
        feats = capture(model, batch, ["bottleneck", "adapter_out"])
    finally:
        h.remove()
    m = batch.completion_mask[..., None].float()
    x_pooled = (seen["x"] * m).sum(1) / m.sum(1)  # [batch, d_in]
    a = layer.lora_A["deployed"].weight
    b = layer.lora_B["deployed"].weight
    # pooling and one (two) matmuls, in the other order: over d_in or the positions
    width = max(a.shape[1], m.shape[1])
    want = x_pooled @ a.T
    tol = rounding_tol(want, depth=1, width=width)
    torch.testing.assert_close(feats["bottleneck"][:, 0], want, atol=tol, rtol=0)
    d_out = b.shape[0]
    want = layer.scaling["deployed"] * x_pooled @ a.T @ b.T
    tol = rounding_tol(want, depth=2, width=width)
    torch.testing.assert_close(feats["adapter_out"][:, 0, :d_out], want, atol=tol, rtol=0)
    assert feats.widths["adapter_out"][0] == d_out
    assert (feats["adapter_out"][:, 0, d_out:] == 0).all()


def test_resid_site_has_one_row_per_layer(char_lm):
    model, tok = char_lm
    feats = capture(model, _batch(tok, [0, 1]), ["resid"])
    assert feats["resid"].shape == (2, 2, 64)
    assert feats.modules["resid"] == ["layers.0", "layers.1"]


def test_resid_and_lora_rows_share_the_module_tree_names(char_lm):
    """'layers.1' is the parent of 'layers.1.self_attn.q_proj', as in the model."""
    model, tok = char_lm
    feats = capture(model, _batch(tok, [0]), ["resid", "bottleneck"])
    modules = {short_name(n) for n, _ in model.named_modules()}
    assert set(feats.modules["resid"]) <= modules
    assert set(feats.modules["bottleneck"]) <= modules
    for row in feats.modules["bottleneck"]:
        assert row.rsplit(".", 2)[0] in feats.modules["resid"], row


def test_lora_rows_are_the_adapters_lora_layers(char_lm):
    model, _ = char_lm
    assert list(_find_lora(model)) == [short_name(n) for n, _ in lora_layers(model)]


def test_capture_refuses_a_merged_layer():
    model = tiny_model(seed=0)
    model.merge_adapter()
    with pytest.raises(RuntimeError, match="is merged; hooks would not fire"):
        capture(model, _batch(CharTokenizer(), [0]), ["bottleneck"])


def test_pooling_is_the_shared_pool_completion_and_at_least_float32():
    """bf16 activations pool in float32; float64 stays float64 (the grad site's case)."""
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    pooled = pool_completion(acts.bfloat16(), mask)
    assert pooled.dtype == torch.float32
    assert torch.equal(pooled[0], acts.bfloat16().float()[0, 2:].sum(0) / 3)
    assert torch.equal(pooled[1], torch.zeros(3))  # no completion tokens: zero, not NaN
    assert pool_completion(acts.double(), mask).dtype == torch.float64
    with pytest.raises(ValueError, match="do not match"):
        pool_completion(acts, mask[:, :4])


def test_capture_in_forward_equals_capture_bottleneck(char_lm):
    model, tok = char_lm
    batch = _batch(tok, [0, 1, 2])
    with capture_in_forward(model, batch.completion_mask) as held:
        with torch.no_grad():
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    want = capture(model, batch, ["bottleneck"])["bottleneck"]
    # the same forward's activations, pooled by two hooks: one pooling's rounding
    tol = rounding_tol(want, width=batch.input_ids.shape[1])
    torch.testing.assert_close(held.features, want, atol=tol, rtol=0)
    assert held.forwards == 1


def test_capture_in_forward_without_a_forward_raises(char_lm):
    model, tok = char_lm
    with capture_in_forward(model, _batch(tok, [0]).completion_mask) as held:
        pass
    with pytest.raises(RuntimeError, match="no bottleneck activation"):
        _ = held.features


def test_grad_site_refuses_zero_initialised_B():
    model = tiny_model(seed=0, nonzero_b=False)
    with pytest.raises(ValueError, match="nonzero B"):
        capture(model, _batch(CharTokenizer(), [0]), ["grad"])


def test_capture_leaves_parameter_grads_untouched(char_lm):
    model, tok = char_lm
    capture(model, _batch(tok, [0, 1]), ["grad"])
    assert all(p.grad is None for p in model.parameters())


def test_unknown_site_and_missing_block_raise(char_lm):
    model, tok = char_lm
    with pytest.raises(ValueError, match="unknown sites"):
        capture(model, _batch(tok, [0]), ["mlp"])
    with pytest.raises(ValueError, match="quarantine"):
        capture(model, _batch(tok, [0]), ["bottleneck"], block="quarantine")


def test_capture_texts_minibatches_equal_one_batch(char_lm):
    model, tok = char_lm
    whole = capture_texts(model, tok, PROMPTS, COMPLETIONS, ["bottleneck", "resid"], batch_size=8)
    parts = capture_texts(model, tok, PROMPTS, COMPLETIONS, ["bottleneck", "resid"], batch_size=2)
    for s in ("bottleneck", "resid"):
        torch.testing.assert_close(whole[s], parts[s], **model_tol(whole[s]))


def test_capture_texts_returns_rows_in_input_order(char_lm):
    """Minibatches are formed by length; each output row must still be its input row."""
    model, tok = char_lm
    prompts, completions = PROMPTS[::-1] + PROMPTS, COMPLETIONS[::-1] + COMPLETIONS[::-1]
    got = capture_texts(model, tok, prompts, completions, ["bottleneck"], batch_size=2)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        one = capture(model, encode(tok, [chat_prompt(tok, p)], [c]), ["bottleneck"])
        want = one["bottleneck"][0]
        torch.testing.assert_close(got["bottleneck"][i], want, **model_tol(want))
