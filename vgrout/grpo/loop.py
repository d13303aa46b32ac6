"""Dr.GRPO with routed adapters, readable top to bottom.

One step (`one_step`): generate G rollouts per prompt -> grade -> skip
zero-variance groups -> gate (zones per rollout, `gate.py`) -> masked
forward/backward with PPO clip and k3 KL (all live groups packed into one
pass, or one pass per group with forward="hf") -> clip each block's gradient
-> AdamW -> decay toward init -> schedule. The run folder, checkpoints and resume live in rundir.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vgrout.files import atomic_write_text
from vgrout.grpo.config import GRPOConfig
from vgrout.grpo.distributed import World
from vgrout.grpo.evaluate import evaluate_views
from vgrout.grpo.gate import Gated, gate
from vgrout.grpo.heal import retain_heal
from vgrout.grpo.passes import group_passes, packed_forward_ok
from vgrout.grpo.policy import build_policy
from vgrout.grpo.rollouts import collect_groups
from vgrout.grpo.rundir import (
    RunDir,
    RunResult,
    TrainState,
    checkpoint,
    export_final,
    load_run,
    record_machine,
    restore,
)
from vgrout.grpo.steplog import StepRecord, gate_log, rollout_rows, step_row, teacher_tripwire
from vgrout.grpo.update import (
    clip_and_measure,
    decay_toward_init,
    group_backward,
    lr_factor,
    packed_backward,
)
from vgrout.names import GATED_ARMS, PAIR_INITS, VIEWS
from vgrout.paths import repo_path


def train(cfg: GRPOConfig, world: World | None = None) -> RunResult:
    """Train one run: cfg.steps Dr.GRPO steps, evaluations, the exported deployed block.

    A folder holding a finished run of the same config is read back, not
    retrained; with cfg.resume an unfinished one continues from its newest
    checkpoint (see rundir.open_run for what is refused). `world`: the ranks of a
    data-parallel run (distributed.py); None is one process.
    """
    world = world or World()
    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed), random.seed(cfg.seed), np.random.seed(cfg.seed)
    run = world.open_run(cfg)
    if (run.path / "result.json").exists():  # a finished run of this config: read it back
        return dataclasses.replace(load_run(run.path), already_finished=True)
    data = RunData.load(cfg)
    ts = start_state(cfg, data, world)
    policy = ts.policy
    samplers = {v: policy.sampler(v) for v in VIEWS}
    packed = packed_forward_ok(policy, cfg)  # the gate's and update's passes
    if cfg.resume:
        restore(run, ts)
    world.start(run, ts, cfg)
    if world.main:
        record_machine(run, ts.step)
    # the untrained baseline every curve starts from (evaluations run on rank 0 only)
    if ts.step == 0 and cfg.eval_every and world.main:
        run.log_many("eval", data.evaluate(policy, cfg, 0))

    bar = tqdm(range(ts.step + 1, cfg.steps + 1), desc=f"grpo {cfg.arm}", initial=ts.step,
               total=cfg.steps)  # fmt: skip
    for step in bar:
        rec = world.gather_record(one_step(ts, data, cfg, world, step, samplers, packed))
        log_step(run, ts, rec, bar)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps and world.main:
            run.log_many("eval", data.evaluate(policy, cfg, step))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            ts.step = step
            checkpoint(run, ts)
    if world.main:
        finish(run, ts, data, cfg)
    world.barrier()
    return load_run(run.path)


@dataclass
class RunData:
    """What a run reads once: the tokenizer, problems, hack templates, pairs, the grader."""

    base: Any
    """The freshly loaded policy model, before adapters are attached."""
    tokenizer: object
    train_set: list
    """Training problems, in the modes training draws (`GRPOConfig.trained_modes`)."""
    test_set: list
    """Held-out problems with their evaluation markers."""
    iid_set: list
    """The training problems in every mode of cfg.modes, for evaluation (the train set
    itself unless train_modes narrows training)."""
    hacks: dict
    """Hack templates per mode, for teacher demos ({} when the run has none)."""
    pairs: list | None
    grade: object
    """list of (completion, problem, mode) -> list of grades, on cfg.workers grader workers."""

    @classmethod
    def load(cls, cfg: GRPOConfig) -> RunData:
        from vgrout.env import grade_many, load_hacks, load_problems
        from vgrout.lm.load import load_policy

        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, cfg.dtype) if cfg.dtype else None
        base, tok = load_policy(cfg.model, device=device, dtype=dtype)
        modes, marker_set = list(cfg.modes), cfg.marker_set or None
        train_path, test_path = repo_path(cfg.train_problems), repo_path(cfg.test_problems)
        train_set = load_problems(train_path, list(cfg.trained_modes()), marker_set=marker_set)
        test_set = load_problems(test_path, modes, eval_markers=True, marker_set=marker_set)
        iid_set = (
            load_problems(train_path, modes, marker_set=marker_set)
            if cfg.train_modes
            else train_set
        )
        hacks = load_hacks() if cfg.teacher_n_per_prompt else {}
        grade = functools.partial(grade_many, workers=cfg.workers)
        return cls(base, tok, train_set, test_set, iid_set, hacks, load_run_pairs(cfg), grade)

    def evaluate(self, policy, cfg: GRPOConfig, step: int, final: bool = False) -> list[dict]:
        return evaluate_views(
            policy, self.tokenizer, cfg, step, self.iid_set, self.test_set, final=final
        )


def one_step(
    ts: TrainState, data: RunData, cfg: GRPOConfig, world: World, step: int, samplers: dict,
    packed: bool,
) -> StepRecord:  # fmt: skip
    """One Dr.GRPO step on this rank's prompts; returns its record (before the ranks' gather).

    samplers: {view: context factory} for generation; packed: whether the gate's
    and the update's passes run packed (`passes.packed_forward_ok`).
    """
    policy, tok = ts.policy, data.tokenizer
    # 1. generate and grade
    problems = ts.prompt_rng.sample(data.train_set, cfg.prompts_per_step)
    problems, free = world.shard(problems, cfg, step)
    groups, times = collect_groups(policy.model, data, problems, cfg, step, samplers, free)
    # 2. gate: a deployed-view pass gives gate features and behaviour log-probs
    t = time.perf_counter()
    gated, thresholds = gate(policy, ts.router, tok, [g for g in groups if g.live], step, cfg,
                             packed)  # fmt: skip
    times["gate"] = time.perf_counter() - t
    # 3. loss and backward (all live groups packed, or one masked pass per group); 4. optimizer
    t = time.perf_counter()
    ts.opt.zero_grad(set_to_none=True)
    stats = backward(policy, gated, cfg, step, packed)
    world.all_reduce_grads(policy.all_params())
    grad, lr = optimizer_step(ts, cfg)
    times["update"] = time.perf_counter() - t
    zones, scores, flags = gate_log(groups, gated)
    return StepRecord(step, groups, zones, scores, thresholds, stats, grad, times, lr,
                      flags if cfg.monitor_use != "route" else None)  # fmt: skip


def backward(policy, gated: list[Gated], cfg: GRPOConfig, step: int, packed: bool) -> list[dict]:
    """Accumulate every live group's masked policy gradient; returns each group's stats."""
    normaliser = float(cfg.prompts_per_step * cfg.group_size * cfg.max_new_tokens)
    if packed:
        return [st for gs in group_passes(gated, cfg.groups_per_pass)
                for st in packed_backward(policy, gs, cfg, normaliser, step)]  # fmt: skip
    return [group_backward(policy, g, cfg, normaliser, step) for g in gated]


def start_state(cfg: GRPOConfig, data: RunData, world: World) -> TrainState:
    """Adapters on the base model, the optimizer and schedule, the router (shared by the
    ranks of a data-parallel run), the prompt RNG."""
    policy = build_policy(cfg, data.base, data.tokenizer, data.pairs)
    opt = torch.optim.AdamW(policy.all_params(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    init_values = [p.detach().clone() for p in policy.all_params()]
    router = world.router(cfg, data.pairs)
    return TrainState(policy, opt, sched, router, random.Random(cfg.seed), init_values)


def optimizer_step(ts: TrainState, cfg: GRPOConfig) -> tuple[dict, float]:
    """Clip each block's gradient, AdamW, decay toward init, advance the schedule.

    Returns (gradient measurements, the learning rate this step used).
    """
    grad = clip_and_measure(ts.policy, cfg.grad_clip)
    lr = float(ts.sched.get_last_lr()[0])
    ts.opt.step()
    decay_toward_init(ts.policy.all_params(), ts.init_values, cfg.weight_decay * lr)
    ts.sched.step()
    return grad, lr


def log_step(run: RunDir, ts: TrainState, rec: StepRecord, bar) -> None:
    row = step_row(rec)
    ts.teacher_low = teacher_tripwire(row, ts.teacher_low, rec.step)
    run.log("steps", row)
    run.log_many("rollouts", rollout_rows(rec))
    bar.set_postfix(reward=f"{row['reward']:.2f}", hack=f"{row['hack']:.2f}",
                    solve=f"{row['solve']:.2f}", route=f"{row['zone_route']:.2f}")  # fmt: skip


def finish(run: RunDir, ts: TrainState, data: RunData, cfg: GRPOConfig) -> None:
    """Retain-heal (if asked), the final evaluation, the export, then result.json."""
    if cfg.heal_steps:
        heal = retain_heal(ts.policy, data.tokenizer, data.pairs, cfg)
        run.log("steps", {"step": cfg.steps, "heal": heal})
    run.log_many("eval", data.evaluate(ts.policy, cfg, cfg.steps, final=True))
    export_final(ts.policy, run)
    atomic_write_text(run.path / "result.json", json.dumps({"finished": True, "steps": cfg.steps}))


def load_run_pairs(cfg: GRPOConfig):
    """Pairs the run needs: for the direction, a pair-based init, or retain-heal."""
    needs = (
        (cfg.arm in GATED_ARMS and not cfg.placebo) or cfg.heal_steps > 0 or cfg.init in PAIR_INITS
    )
    if not needs:
        return None
    from vgrout.env.pairs import load_pairs

    spec = cfg.pairs
    path, _, rest = spec.partition("#")
    return load_pairs(str(repo_path(path)) + ("#" + rest if rest else ""))
