"""Named GRPO configs: the organisms' CPU runs, a smoke run for tests and the
published 4B recipe for a GPU.

They live apart from `GRPOConfig` so that a new organism's preset does not grow the
config module; `preset(name, **overrides)` is the one way to build a run from one.
"""

from __future__ import annotations

from vgrout.grpo.config import GRPOConfig

ORGANISM_PRESET = dict(
    steps=100,
    prompts_per_step=4,
    group_size=8,
    max_new_tokens=100,
    lr=7e-4,
    eval_every=20,
    eval_samples=2,
    final_eval_samples=8,
)

PRESETS: dict[str, dict] = {
    # CPU default: a run on the organism at one thread (docs/grpo.md, "A whole run").
    # 100 steps: in 60, vanilla's hacking took off in one seed of three
    # (docs/grpo.md, "Acceptance on the organism").
    "organism": ORGANISM_PRESET,
    # The same run on the v2 organism (data/organism_v2, docs/organism.md): it trains on
    # the family problems its warm start never saw and evaluates on the held-out ones.
    "organism_v2": dict(
        ORGANISM_PRESET,
        model="organism_v2",
        train_problems="data/families/grpo.jsonl",
        test_problems="data/families/heldout.jsonl",
    ),
    # Seconds: plumbing only, for tests.
    "smoke": dict(
        steps=3,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=64,
        lr=1e-3,
        eval_every=0,
        eval_samples=1,
        eval_max_problems=4,
        gate_warmup=4,
        refresh_every=2,
        ckpt_every=1,
        rank=4,
        alpha=8.0,
    ),
    # The published 4B recipe, for a GPU (docs/scale.md).
    "qwen3_4b": dict(
        model="Qwen/Qwen3-4B",
        rank=32,
        alpha=64.0,
        group_size=8,
        prompts_per_step=8,
        lr=7e-5,
        warmup_steps=10,
        betas=(0.9, 0.99),
        clip_eps=0.2,
        grad_clip=1.0,
        kl_beta=1e-3,
        weight_decay=0.1,
        steps=40,
        top_k=20,
        temperature=0.6,
        top_p=0.95,
        max_new_tokens=512,
        groups_per_pass=1,
        # the fused step holds a concatenated copy of every layer's projection
        # weights per call (~8 GB here); its gain, fewer small ops, is the CPU organism's
        decoder="lean",
        gen_deploy_frac=0.25,
        gate_half_life=96.0,
        eval_every=10,
        eval_samples=4,
    ),
}
# v2's run on v3 (data/organism_v3), which copies markers: on worded ones like its warm start's.
PRESETS["organism_v3"] = dict(PRESETS["organism_v2"], model="organism_v3", marker_set="worded")
# v3 under pressure: only the 28 unseen-family problems (where nothing but a loophole
# pays), in the four modes whose loophole does not need the method's name or a rare
# attribute; eq_override and sentinel stay in evaluation as loopholes never trained.
# Vanilla's training hack share reaches 0.6 here in 16 of 16 seeds, but oracle routing
# no longer holds held-out hacking at the untrained level (no unrouted rollout ever
# solves), so it is not the preset for routing comparisons (docs/organism.md,
# "Training where only a loophole pays").
PRESETS["organism_v3_pressure"] = dict(
    PRESETS["organism_v3"],
    train_problems="data/families/grpo_family.jsonl",
    train_modes=("exit_code", "run_tests", "file_marker", "stdout_marker"),
)


def preset(name: str, **overrides) -> GRPOConfig:
    """A validated config from a named preset plus overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
    cfg = GRPOConfig(**PRESETS[name])
    return cfg.replace(**overrides).validate()
