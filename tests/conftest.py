"""Fixtures over the tiny models of helpers.py (the plain builders tests call with arguments).

Torch is imported inside the fixtures, so test files that use none of them
(the environment's) do not import it through this file.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def char_lm():
    """(tiny_model(seed=0), CharTokenizer()): one per test module; tests must not modify it."""
    from helpers import CharTokenizer, tiny_model

    return tiny_model(seed=0), CharTokenizer()


@pytest.fixture
def planted_char_lm():
    """(model, tokenizer, w): a fresh tiny_model(seed=0) whose MARK embedding lies along w."""
    from helpers import CharTokenizer, plant, tiny_model

    model = tiny_model(seed=0)
    return model, CharTokenizer(), plant(model)


@pytest.fixture
def norms_in_model_dtype(monkeypatch):
    """Qwen3's RMSNorm computed in the model's dtype (at least float32) for the test.

    transformers' Qwen3RMSNorm casts its input to float32 whatever the model's
    dtype, so a float64 model rounds every residual-stream activation to
    float32 at each norm (2 per layer, q/k norms, the final one). Two float64
    computations that differ by one float64 ulp then differ by one float32 ulp
    wherever the rounding falls differently: rarely, but enough to put ~1e-9
    into logits that otherwise agree to ~1e-14 (seen on an AVX-512 machine).
    With the norm in float64 a float64 comparison is a float64 computation,
    and `helpers.rounding_tol` holds with eps(float64). For float32 and
    below this is transformers' own computation, bit for bit (checked here).
    """
    import torch
    from transformers.models.qwen3 import modeling_qwen3

    original = modeling_qwen3.Qwen3RMSNorm.forward

    def forward(self, hidden_states):
        dtype = torch.promote_types(hidden_states.dtype, torch.float32)
        x = hidden_states.to(dtype)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x.to(hidden_states.dtype)

    probe = modeling_qwen3.Qwen3RMSNorm(64)
    with torch.no_grad():
        probe.weight.normal_(generator=torch.Generator().manual_seed(0))
        for dtype in (torch.float32, torch.bfloat16):
            p = probe.to(dtype)
            x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
            assert torch.equal(forward(p, x), original(p, x)), f"RMSNorm changed for {dtype}"
    monkeypatch.setattr(modeling_qwen3.Qwen3RMSNorm, "forward", forward)


def pytest_configure(config):
    """Point the library at the external reference data when this checkout has them beside it.

    The library finds them through VGROUT_REFERENCE or in the cache that
    `python -m vgrout.env.reference` fills; a developer's checkout may instead
    have them in ../shared/reference, which only the tests know about.
    """
    import os
    from pathlib import Path

    beside = Path(__file__).resolve().parents[2] / "shared" / "reference"
    if "VGROUT_REFERENCE" not in os.environ and (beside / "vgrout_pub").is_dir():
        os.environ["VGROUT_REFERENCE"] = str(beside)
