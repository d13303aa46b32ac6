"""Which config owns what in a routed TRL run, and the settings the trainer refuses.

Two configs describe a routed run inside TRL. TRL's `GRPOConfig` (here
`RoutedGRPOConfig`, the same class with the project loop's defaults) owns the
optimisation: generation, batch, learning rate and schedule, loss, clipping,
KL. The project's `vgrout.grpo.config.GRPOConfig` (`routing`) owns what TRL has
no word for: the arm, the adapters, the gate, evaluation in both views, and
weight decay toward the init. The fields both could set (`TRL_OWNED`) are
TRL's: `routing_for` copies TRL's values into the routing config the trainer
keeps, and refuses a routing config that set one of them to something else,
because a silently overridden field would make a run other than its config
says. `trl_args` builds TRL's config from a routing config, so a preset of the
project's loop runs in TRL unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trl import GRPOConfig as TRLConfig

from vgrout.env.trl import CHAT_TEMPLATE_KWARGS
from vgrout.grpo.config import GRPOConfig


@dataclass
class RoutedGRPOConfig(TRLConfig):
    """TRL's GRPOConfig with the defaults of the project's Dr.GRPO loop.

    Three defaults change; every field keeps TRL's meaning.
    """

    loss_type: str = field(
        default="dr_grpo",
        metadata={
            "help": "TRL's loss formulation; dr_grpo (the default here, TRL's is dapo) sums "
            "token losses over a constant, as the project's loop does."
        },
    )
    scale_rewards: str = field(
        default="none",
        metadata={
            "help": "Advantage scaling; none (the default here, TRL's is group) leaves "
            "Dr.GRPO's advantages unscaled, as the project's loop does (std_normalise=False)."
        },
    )
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={
            "help": "Multiply the KL term by the (differentiable) importance ratio; False (the "
            "default here, TRL's is True) gives the k3 KL gradient of the project's loop, "
            "which the ratio's gradient changes even on-policy."
        },
    )


def _owned(args) -> dict:
    """{routing field: the value TRL's `args` gives it}."""
    out = {
        "group_size": args.num_generations,
        "max_new_tokens": args.max_completion_length,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "lr": args.learning_rate,
        "betas": (args.adam_beta1, args.adam_beta2),
        "clip_eps": args.epsilon,
        "kl_beta": args.beta,
        "grad_clip": args.max_grad_norm,
        "std_normalise": args.scale_rewards != "none",
        "warmup_steps": args.warmup_steps,
        "prompts_per_step": args.generation_batch_size // args.num_generations,
    }
    if args.max_steps > 0:
        out["steps"] = args.max_steps
    return out


TRL_OWNED = (
    "group_size",
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "lr",
    "betas",
    "clip_eps",
    "kl_beta",
    "grad_clip",
    "std_normalise",
    "warmup_steps",
    "prompts_per_step",
    "steps",
)
"""Routing-config fields whose value TRL's config decides in a routed TRL run."""


def routing_for(routing: GRPOConfig, args) -> GRPOConfig:
    """`routing` with every TRL-owned field set from TRL's `args`, validated.

    Raises ValueError naming each TRL-owned field that `routing` set (away from
    GRPOConfig's default) to a value TRL's config does not have.
    """
    default = GRPOConfig()
    owned = _owned(args)
    bad = [
        f"{name}={getattr(routing, name)!r} but TRL's config gives {value!r}"
        for name, value in owned.items()
        if getattr(routing, name) != getattr(default, name) and getattr(routing, name) != value
    ]
    if bad:
        raise ValueError(
            "routing config: fields TRL's GRPOConfig owns disagree with it:\n  "
            + "\n  ".join(bad)
            + "\nBuild TRL's config with vgrout.grpo.trl.trl_args(routing, ...), or leave "
            "these fields at their defaults in the routing config"
        )
    return routing.replace(**owned).validate()


def trl_args(routing: GRPOConfig, output_dir: str, **overrides) -> RoutedGRPOConfig:
    """TRL's config for a routing config: its optimisation fields mapped one to one.

    One process draws `prompts_per_step` prompts a step; under N processes
    pass `per_device_train_batch_size=prompts_per_step * group_size // N`.
    fp32 without gradient checkpointing, as the project's loop runs on CPU
    (TRL defaults to bf16 autocast and checkpointing). Keyword `overrides` win.
    """
    cfg = routing.validate()
    fields = dict(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size,
        num_generations=cfg.group_size,
        max_completion_length=cfg.max_new_tokens,
        max_steps=cfg.steps,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        learning_rate=cfg.lr,
        adam_beta1=cfg.betas[0],
        adam_beta2=cfg.betas[1],
        weight_decay=0.0,  # the routed trainer decays toward the init (routing.weight_decay)
        max_grad_norm=cfg.grad_clip,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_frac},
        epsilon=cfg.clip_eps,
        beta=cfg.kl_beta,
        scale_rewards="group" if cfg.std_normalise else "none",
        loss_type="dr_grpo",
        use_bias_correction_kl=False,
        chat_template_kwargs=dict(CHAT_TEMPLATE_KWARGS),
        seed=cfg.seed,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    unknown = set(overrides) - {f.name for f in dataclasses.fields(RoutedGRPOConfig)}
    if unknown:
        raise ValueError(f"trl_args: unknown TRL GRPOConfig field(s) {sorted(unknown)}")
    return RoutedGRPOConfig(**{**fields, **overrides})


def refusals(routing: GRPOConfig, args, **trainer_kwargs) -> list[str]:
    """What this trainer cannot run, one line per setting, naming the field or option."""
    bad = []
    if routing.arm == "routeV":
        bad.append("arm='routeV': the gradient-site gate is not built in TRL; use routeA")
    if routing.plain_lora:
        bad.append("plain_lora=True: train one plain LoRA with TRL's GRPOTrainer(peft_config=...)")
    for name in ("gen_deploy_frac", "teacher_n_per_prompt", "heal_steps"):
        if getattr(routing, name):
            bad.append(f"{name}={getattr(routing, name)}: not built in RoutedGRPOTrainer")
    if routing.unhackable_frac:
        bad.append(
            "unhackable_frac>0: put hint-free rows (mode 'gt_only') into the dataset instead"
        )
    if args.weight_decay:
        bad.append(
            f"weight_decay={args.weight_decay} (TRL): TRL's AdamW decays toward zero, which moves "
            "a block initialised off zero away from its zero net delta; set it to 0 and use "
            "the routing config's weight_decay (decay toward the init)"
        )
    if args.fp16:
        bad.append("fp16=True: the per-block clip does not unscale fp16 gradients; use bf16")
    if args.deepspeed or args.deepspeed_plugin is not None:
        bad.append(
            "deepspeed: the engine clips and shards gradients itself (no per-block clip), and "
            "ZeRO-3 partitions the adapter weights the routed forward reads directly"
        )
    if args.fsdp:
        bad.append(
            "fsdp: the merged sampling views, the per-block clip and the gate's passes "
            "assume whole (unsharded) weights on every rank"
        )
    if args.mask_truncated_completions:
        bad.append(
            "mask_truncated_completions=True: a row without completion tokens has no gate feature"
        )
    if args.use_transformers_continuous_batching:
        bad.append(
            "use_transformers_continuous_batching=True: it casts the model while the "
            "merged sampling view has the adapters swapped out"
        )
    if args.sync_ref_model:
        bad.append("sync_ref_model=True: the reference is the base model (adapters disabled)")
    for name in ("peft_config", "tools", "environment_factory"):
        if trainer_kwargs.get(name):
            bad.append(f"{name}=...: not supported by RoutedGRPOTrainer")
    return bad
