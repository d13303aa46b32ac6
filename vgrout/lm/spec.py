"""How completions are drawn, as one value passed whole (no torch).

GRPO rollouts, evaluation, the organism's measurement, the labelled pools and
the self-generated pairs all sample through `sampling.generate`; a spec keeps
their temperature, cuts, length, decoder and batch size together, so that a
setting cannot be dropped or defaulted differently somewhere along the way.
The seed is not part of it: callers draw several samples from one spec with
seeds derived from their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vgrout.names import DECODERS, DEFAULT_DECODER


@dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int = 128
    """Completion length cap (a row stops earlier at eos)."""
    temperature: float = 1.0
    """Sampling temperature; 0 is greedy."""
    top_k: int = 0
    """Sample from the k most likely tokens (0 = no cut)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = no cut)."""
    decoder: str = DEFAULT_DECODER
    """vgrout.names.DECODERS; each falls back with a warning to the next for a model it
    does not support (fused -> lean -> hf)."""
    batch_size: int = 64
    """Rows per sampling call (whole prompts per call, see `sampling.chunks`)."""

    def __post_init__(self) -> None:
        bad = []
        if self.decoder not in DECODERS:
            bad.append(f"decoder={self.decoder!r}: expected one of {DECODERS}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            bad.append(
                f"max_new_tokens={self.max_new_tokens}, batch_size={self.batch_size}: expected >= 1"
            )
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            bad.append(
                f"temperature={self.temperature}, top_k={self.top_k}, top_p={self.top_p}: "
                "expected temperature >= 0, top_k >= 0, 0 < top_p <= 1"
            )
        if bad:
            raise ValueError("SamplingSpec: " + "; ".join(bad))

    def replace(self, **changes) -> SamplingSpec:
        return dataclasses.replace(self, **changes)


DEFAULT_SAMPLING = SamplingSpec()
"""The spec a sampler uses when given none (frozen, so one shared value is safe)."""

COMMITTED_SAMPLING = SamplingSpec(decoder="hf")
"""How the committed organism measurements (docs/organism.md), labelled pools and
self-generated pairs (notebooks 01 and 02) were sampled: `model.generate`, which
draws other tokens for a seed than the lean and fused loops. Their entry points
(`measure.measure_organism`, `diagnostics.labelled_pool_from_policy`,
`selfpairs.self_generated_pairs`) sample with it so that those results reproduce."""
