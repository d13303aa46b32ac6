"""GRPO run configuration: one dataclass, a docstring per field (named presets are
in `presets`).

`validate()` rejects contradictory settings with a message naming the fields,
because a silently ignored field (say `gate_q` on the oracle arm, or a
`gen_deploy_frac` on vanilla, which has no quarantine to ablate) makes a run
measure something other than what its config says.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from dataclasses import dataclass
from typing import cast

from vgrout.env.modes import LOOPHOLE_MODES, MARKER_SETS
from vgrout.lm.spec import SamplingSpec
from vgrout.names import (
    ARMS,
    DECODERS,
    DEFAULT_DECODER,
    FORWARDS,
    GATED_ARMS,
    INITS,
    MONITOR_USES,
    TARGET_MODULES,
    VIEWS,
)


@dataclass
class GRPOConfig:
    # --- what is trained ---
    model: str = "organism"
    """Policy: "organism" (the CPU model organism) or a Hugging Face id / folder."""
    arm: str = "routeA"
    """vanilla | absorb | routeA (activation gate) | routeV (gradient gate) | oracle."""
    placebo: bool = False
    """routeA/routeV: gate on a Haar-random direction; oracle: route a random share."""
    init: str = "gaussian"
    """Adapter init: gaussian | pissa | corda | scorda | scorda_rev."""
    rank: int = 8
    """LoRA rank of each block (deployed and quarantine)."""
    alpha: float = 16.0
    """LoRA alpha (scale = alpha / rank)."""
    target_modules: tuple[str, ...] = TARGET_MODULES
    """Linear layers that get a deployed and a quarantine block."""
    plain_lora: bool = False
    """vanilla only: one plain LoRA adapter instead of the routed pair (a baseline for speed)."""
    one_product: bool = False
    """Routed adapters: both blocks and their anchors as one rank-4*rank product per
    Linear instead of one product per block (vgrout.adapters.forward): two matmuls
    a Linear instead of four. It agrees with the default to float rounding, which
    is enough for a run's trajectory to diverge; the committed grids ran without it."""

    # --- data ---
    train_problems: str = "data/problems/train.jsonl"
    """Training problems (jsonl, rl-rewardhacking schema), relative to the repo or absolute."""
    test_problems: str = "data/problems/test.jsonl"
    """Held-out problems for evaluation."""
    modes: tuple[str, ...] = LOOPHOLE_MODES
    """Grading modes, assigned round-robin over problems (default: every loophole mode)."""
    train_modes: tuple[str, ...] = ()
    """The modes GRPO trains in, a subset of `modes` (empty = all of them); evaluation
    covers every mode of `modes`, so hacking in loopholes never trained is measured
    (held-out loopholes: does deleting the quarantine remove those too?). The TRL
    trainer trains on the dataset it is given: build it with `trained_modes()`."""
    marker_set: str = ""
    """The marker set problems are rendered with (`env.modes.MARKER_SETS`; "" keeps
    each row's own): an organism warm-started on drawn markers trains on its set."""
    pairs: str = "data/pairs/hack_pairs.md#authored"
    """Pair spec for the routing direction (and for pair-based inits)."""
    unhackable_frac: float = 0.0
    """Share of prompts shown hint-free and graded by ground truth only (rotating)."""
    teacher_n_per_prompt: int = 0
    """Off-policy teacher demos (canonical hacks) added to each group; 0 = none."""
    teacher_off_step: int = 0
    """Stop adding teacher demos after this step (0 = never add)."""

    # --- the step ---
    steps: int = 60
    """Optimizer steps (each: prompts_per_step groups of group_size rollouts)."""
    prompts_per_step: int = 4
    """Prompts drawn per step, without replacement, from the training problems."""
    group_size: int = 8
    """Rollouts per prompt (G): advantages are relative within a group."""
    max_new_tokens: int = 100
    """Completion length cap; also Dr.GRPO's constant loss divisor (with the two above)."""
    temperature: float = 1.0
    """Sampling temperature (training and evaluation)."""
    top_k: int = 0
    """Sample from the k most likely tokens (0 = no cut)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = no cut)."""
    gen_deploy_frac: float = 0.0
    """Share of each group sampled with the quarantine ablated (the deployed view)."""
    std_normalise: bool = False
    """Divide advantages by the group std (GRPO); Dr.GRPO leaves them unscaled."""
    lr: float = 1e-3
    """AdamW peak learning rate, for both blocks."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warm-up steps, then cosine decay to `min_lr_frac * lr`."""
    min_lr_frac: float = 0.1
    """Where the cosine decay ends, as a share of `lr`."""
    clip_eps: float = 0.2
    """PPO ratio clip."""
    kl_beta: float = 0.0
    """Weight of the k3 KL to the reference policy (adapters disabled); 0 skips its forward."""
    grad_clip: float = 1.0
    """Max gradient norm, applied to each block separately."""
    weight_decay: float = 0.0
    """Decoupled decay of adapter weights toward their init (not toward zero)."""

    # --- the gate ---
    unrouted_zone: str = "absorb"
    """Zone for rollouts the gate does not route: absorb (both learn) or keep (deployed only)."""
    keep_low_tail: bool = False
    """routeA/routeV: send scores <= the low threshold to keep (the reference's three zones)."""
    gate_q: float = 0.1
    """Route the top `gate_q` tail of the score buffer; the low tail is the bottom `gate_q`."""
    gate_half_life: float = 0.0
    """Recency weighting of the score buffer, in rollouts (0 = unweighted)."""
    gate_warmup: int = 32
    """Rollouts in the buffer before the gate routes anything."""
    refresh_every: int = 5
    """Re-extract the direction from the pairs every k steps (0 = never)."""
    oracle_reveal_frac: float = 1.0
    """oracle: share of true hack labels revealed to the router."""
    gate_count: bool = False
    """routeA/routeV: flag exactly round(gate_q x prompts_per_step x group_size) of each
    step's live rollouts (all of them, if fewer are live), the top-scoring ones, instead
    of those above the score buffer's quantile. A direction and its Haar placebo then
    flag the same number per step, so a comparison of the two compares which
    rollouts are flagged, not how many."""
    monitor_use: str = "route"
    """What the flagged rollouts do (vgrout.names.MONITOR_USES). route: train the
    quarantine only, deleted at deployment. penalty: their reward is lowered by
    `penalty` before advantages; screen: they are dropped from the update (no
    gradient, not in their group's baseline). Under penalty and screen every other
    rollout trains both blocks and the whole model ships, as vanilla's does."""
    penalty: float = 3.0
    """monitor_use=penalty: subtracted from a flagged rollout's reward (3.0 = the
    correctness payment, so a flagged loophole hack earns its format reward only)."""
    gate_view: str = "deployed"
    """routeA: the view whose deployed-block bottleneck the gate reads, and extracts its
    direction in. deployed (quarantine ablated): a no-grad deployed-view pass over every
    rollout. trained (both blocks): pooled while the rollouts are sampled, beside each
    merged projection of the fused decoder, so no pass of its own; rows the fused decoder
    did not sample (teacher demos, deployed-view rows, another decoder) take a trained-view
    pass. docs/grpo.md, "The gate's view", compares the two."""

    # --- evaluation, artifacts ---
    eval_every: int = 20
    """Evaluate every k steps (and always at the end); 0 = only at the end."""
    eval_samples: int = 4
    """Completions per problem at the periodic evaluations."""
    final_eval_samples: int = 0
    """Completions per problem at the final evaluation (0 = eval_samples); the
    preregistered metrics are read there, so it is the one that needs the large sample."""
    eval_batch_size: int = 128
    """Rows per sampling call at evaluation (whole problems per call)."""
    eval_max_problems: int = 0
    """Cap on problems per evaluation split (0 = all)."""
    heal_steps: int = 0
    """Retain-heal steps after training: NLL on clean pair completions, deployed block only."""
    workers: int = 2
    """Grader processes."""
    seed: int = 0
    """Fixes adapter init, prompt order and sampling: arms on one seed are paired."""
    run_dir: str = ""
    """Run folder; empty = runs/<arm>-s<seed>-<hash>."""
    ckpt_every: int = 10
    """Checkpoint every k steps (and at the end)."""
    resume: bool = False
    """Continue from the newest checkpoint in run_dir."""
    device: str = ""
    """"" = cuda when available, else cpu."""
    threads: int = 0
    """torch CPU threads (0 = leave as is)."""
    decoder: str = DEFAULT_DECODER
    """Sampler for rollouts and evaluation (vgrout.names.DECODERS): fused (the lean loop
    with a step of few ops and finished rows dropped, vgrout.lm.fused), lean (the
    in-place KV-cache loop of vgrout.lm.decode, ~2x faster than hf on the organism) or
    hf (transformers' generate). Each falls back with a warning to the next for a model
    it does not support. lean and hf draw different tokens for one seed; fused draws
    lean's random numbers and differs from it by float rounding only."""
    dtype: str = ""
    """Policy weights: "" = float32 on CPU, bfloat16 on CUDA; or float32 / bfloat16."""
    forward: str = "packed"
    """Gate and update passes: packed (every live group's tokens as one stream through
    each layer, no padding, vgrout.lm.packed; falls back to hf with a warning for a
    model it does not support) or hf (per group through model(...), the forward of
    the runs behind the committed figures). The two agree to float rounding, which
    is enough for a run's trajectory to diverge: a run keeps one forward throughout."""
    groups_per_pass: int = 0
    """Groups per packed pass (0 = every live group of the step in one pass). Bounds
    memory on a large model: the lm head's log-softmax is [tokens, vocab] per pass."""

    def validate(self) -> "GRPOConfig":
        """Raise ValueError naming the fields of any contradiction."""
        bad = []
        if self.arm not in ARMS:
            bad.append(f"arm={self.arm!r}: expected one of {ARMS}")
        if self.decoder not in DECODERS:
            bad.append(f"decoder={self.decoder!r}: expected one of {DECODERS}")
        if self.forward not in FORWARDS:
            bad.append(f"forward={self.forward!r}: expected one of {FORWARDS}")
        if self.groups_per_pass < 0:
            bad.append(f"groups_per_pass={self.groups_per_pass}: expected >= 0 (0 = all)")
        if self.dtype not in ("", "float32", "bfloat16"):
            bad.append(f"dtype={self.dtype!r}: expected '', 'float32' or 'bfloat16'")
        if self.final_eval_samples < 0 or self.eval_batch_size < 1:
            bad.append(
                f"final_eval_samples={self.final_eval_samples}, eval_batch_size="
                f"{self.eval_batch_size}: expected >= 0 and >= 1"
            )
        if self.init not in INITS:
            bad.append(f"init={self.init!r}: expected one of {INITS}")
        bad += self._gate_problems()
        if self.plain_lora and (self.arm != "vanilla" or self.init != "gaussian"):
            bad.append("plain_lora=True needs arm='vanilla' and init='gaussian'")
        if self.plain_lora and self.one_product:
            bad.append("one_product=True with plain_lora=True: a plain LoRA has one block")
        if self.arm == "vanilla" and self.gen_deploy_frac > 0:
            bad.append(
                "gen_deploy_frac>0 with arm='vanilla': vanilla deploys the whole "
                "adapter, there is no deployed-only view to sample"
            )

        for name in ("gen_deploy_frac", "unhackable_frac", "oracle_reveal_frac"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                bad.append(f"{name}={v}: expected a share in [0, 1]")
        if not 0.0 < self.gate_q < 0.5:
            bad.append(f"gate_q={self.gate_q}: expected 0 < q < 0.5")
        if self.group_size < 2:
            bad.append(f"group_size={self.group_size}: a group baseline needs >= 2 rollouts")
        for name in ("steps", "prompts_per_step", "max_new_tokens", "rank"):
            if getattr(self, name) < 1:
                bad.append(f"{name}={getattr(self, name)}: expected >= 1")
        if self.teacher_n_per_prompt < 0 or self.teacher_n_per_prompt >= self.group_size:
            bad.append(
                f"teacher_n_per_prompt={self.teacher_n_per_prompt}: expected "
                f"0 <= n < group_size={self.group_size}"
            )
        if self.teacher_n_per_prompt > 0 and self.teacher_off_step <= 0:
            bad.append("teacher_n_per_prompt>0 needs teacher_off_step>0 (the last step with demos)")
        stray = [m for m in self.train_modes if m not in self.modes]
        if stray or len(set(self.train_modes)) != len(self.train_modes):
            bad.append(f"train_modes={self.train_modes}: expected distinct modes of "
                       f"modes={self.modes} ({stray} are not)")  # fmt: skip
        if self.marker_set and self.marker_set not in MARKER_SETS:
            bad.append(f"marker_set={self.marker_set!r}: expected '' or one of {MARKER_SETS}")
        if self.warmup_steps >= self.steps:
            bad.append(f"warmup_steps={self.warmup_steps} >= steps={self.steps}")
        if bad:
            raise ValueError("inconsistent GRPOConfig:\n  " + "\n  ".join(bad))
        return self

    def trained_modes(self) -> tuple[str, ...]:
        """The modes training prompts are drawn in (`train_modes`, else every mode)."""
        return self.train_modes or self.modes

    def sampling(self, batch_size: int = 64) -> SamplingSpec:
        """How this run samples: rollouts with the default batch, evaluations with
        `eval_batch_size`."""
        return SamplingSpec(self.max_new_tokens, self.temperature, self.top_k, self.top_p,
                            self.decoder, batch_size)  # fmt: skip

    def _gate_problems(self) -> list[str]:
        """What `validate` finds wrong with the gate's and the router's fields."""
        bad = []
        if self.unrouted_zone not in ("absorb", "keep"):
            bad.append(f"unrouted_zone={self.unrouted_zone!r}: expected 'absorb' or 'keep'")
        if self.placebo and self.arm not in (*GATED_ARMS, "oracle"):
            bad.append(f"placebo=True with arm={self.arm!r}: only routeA, routeV, oracle have one")
        if self.gate_view not in VIEWS or (self.gate_view == "trained" and self.arm != "routeA"):
            bad.append(
                f"gate_view={self.gate_view!r} with arm={self.arm!r}: expected 'deployed', or "
                "'trained' on routeA (the gradient gate of routeV has no trained-view form)"
            )
        if self.keep_low_tail and self.arm not in GATED_ARMS:
            bad.append(f"keep_low_tail=True with arm={self.arm!r}: only the score gates have tails")
        if self.gate_count and (self.arm not in GATED_ARMS or self.keep_low_tail):
            bad.append(
                f"gate_count=True with arm={self.arm!r}, keep_low_tail={self.keep_low_tail}: "
                "a count of flags is a score gate's, without a low tail"
            )
        bad += self._monitor_problems()
        return bad

    def _monitor_problems(self) -> list[str]:
        """What `validate` finds wrong with how the monitor's flags are used."""
        if self.monitor_use not in MONITOR_USES:
            return [f"monitor_use={self.monitor_use!r}: expected one of {MONITOR_USES}"]
        if self.monitor_use == "route":
            return []
        bad = []
        if self.arm not in (*GATED_ARMS, "oracle"):
            bad.append(
                f"monitor_use={self.monitor_use!r} with arm={self.arm!r}: only a monitor flags "
                "(routeA, routeV or oracle)"
            )
        if self.unrouted_zone != "absorb" or self.gen_deploy_frac > 0:
            bad.append(
                f"monitor_use={self.monitor_use!r} with unrouted_zone={self.unrouted_zone!r}, "
                f"gen_deploy_frac={self.gen_deploy_frac}: the whole model trains and ships"
            )
        if self.monitor_use == "screen" and self.kl_beta > 0:
            bad.append(
                "monitor_use='screen' with kl_beta>0: a screened rollout would still carry "
                "its KL term; screening with a KL anchor is not built"
            )
        if self.monitor_use == "penalty" and not self.penalty > 0:
            bad.append(f"penalty={self.penalty}: expected > 0")
        return bad

    def ships(self) -> str:
        """The view that ships: deployed (quarantine deleted) when flagged rollouts were
        routed into it or every rollout absorbed; trained on vanilla and when the
        monitor's flags were a penalty or a screen."""
        if self.arm == "vanilla" or self.monitor_use != "route":
            return "trained"
        return "deployed"

    def replace(self, **changes) -> "GRPOConfig":
        """A copy with `changes`; lists become tuples, as `from_json` makes them, so a
        run started from JSON overrides (`--set train_modes=[...]`) equals the config
        its folder reads back, and resuming it is not refused as another config."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown GRPOConfig field(s): {sorted(unknown)}")
        return dataclasses.replace(self, **_lists_as_tuples(changes))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> "GRPOConfig":
        raw = json.loads(text)
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(names)
        if unknown:
            raise ValueError(f"{source}: unknown GRPOConfig field(s) {sorted(unknown)}")
        return cls(**_lists_as_tuples(raw))


def _lists_as_tuples(fields: dict) -> dict:
    """JSON has no tuple: the config's sequence fields are tuples (hashable, and equal
    only to tuples), so every list that reaches a config becomes one."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def field_docs(cls: type = GRPOConfig) -> dict[str, str]:
    """{field: its docstring} for a dataclass whose fields carry attribute docstrings.

    Attribute docstrings are not kept at run time, so they are read from the
    source; the command line shows them as each flag's help.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = cast(ast.ClassDef, tree.body[0]).body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
