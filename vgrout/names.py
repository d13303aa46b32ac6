"""The project's vocabulary, declared once (no torch).

Every module that needs one of these names imports it from here, so that a
config check, a figure's legend and a log column cannot drift apart.
"""

ARMS = ("vanilla", "absorb", "routeA", "routeV", "oracle")
"""GRPO arms: no routing (vanilla), every rollout trains both blocks (absorb),
score-gated routing on the bottleneck (routeA) or gradient (routeV) site, and
routing on the true hack labels (oracle)."""

GATED_ARMS = ("routeA", "routeV")
"""Arms whose zones come from a direction's score (they have gate metrics)."""

MONITOR_USES = ("route", "penalty", "screen")
"""What a run does with the rollouts its monitor (a direction's gate, or true labels)
flags: route them into the quarantine, lower their reward, or drop them from the
update (`vgrout.grpo.monitor`)."""

ZONES = ("keep", "absorb", "route")
"""Per-rollout zones: keep trains the deployed block only, absorb trains both,
route trains the quarantine only."""

VIEWS = ("trained", "deployed")
"""The two views of a policy: trained = both blocks (the model as trained);
deployed = the quarantine deleted. What *ships* is one of the two, and a
separate word: the deployed view on arms that route or absorb, the trained view
on vanilla, which deploys whole (evaluation rows carry it as `ships`, figures
as "shipped"). A policy without a quarantine (plain LoRA) has one model, so
its two views coincide."""

SITES = ("resid", "bottleneck", "adapter_out", "grad")
"""Capture sites of completion-token activations, in the order figures draw them."""

INITS = ("gaussian", "pissa", "corda", "scorda", "scorda_rev")
"""Adapter inits; the last three are fit on hack/clean pairs."""

PAIR_INITS = ("corda", "scorda", "scorda_rev")
"""Inits that need pairs (and a tokenizer) to be fit."""

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Default Linear modules that carry adapters (every projection of a Qwen3 layer)."""

DECODERS = ("hf", "lean", "fused")
"""How completions are sampled: hf = transformers' `generate`; lean = the in-place
KV-cache loop of `vgrout.lm.decode` (same distribution, different draws for a seed);
fused = `vgrout.lm.fused`, the lean loop's cache and random stream with a decode step
of few ops and finished rows dropped (the lean loop's tokens up to rounding)."""

DEFAULT_DECODER = "fused"
"""The decoder every sampler uses unless told otherwise (`vgrout.lm.spec.SamplingSpec`,
`GRPOConfig.decoder`)."""

FORWARDS = ("hf", "packed")
"""How the gate and the update run their passes: hf = per group through `model(...)`;
packed = every live group's tokens in one stream (`vgrout.lm.packed`)."""
