"""Dr.GRPO with routed adapters, readable top to bottom.

One step: generate G rollouts per prompt -> grade -> skip zero-variance
groups -> gate (zones per rollout) -> one masked forward/backward per group
with PPO clip and k3 KL -> clip each block's gradient -> AdamW -> decay toward
init -> schedule. The run folder, checkpoints and resume live in rundir.py.
"""

from __future__ import annotations

import functools
import json
import random
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from vgrout.files import atomic_write_text
from vgrout.grpo.config import GRPOConfig
from vgrout.grpo.evaluate import evaluate_views
from vgrout.grpo.heal import retain_heal
from vgrout.grpo.policy import build_policy
from vgrout.grpo.rollouts import collect_groups
from vgrout.grpo.router import Router
from vgrout.grpo.rundir import RunResult, checkpoint, export_final, load_run, open_run, restore
from vgrout.grpo.steplog import rollout_rows, step_row, teacher_tripwire
from vgrout.grpo.update import (
    clip_and_measure,
    decay_toward_init,
    deployed_pass,
    group_backward,
    group_batch,
    lr_factor,
)
from vgrout.lm.tokens import pad_id
from vgrout.names import GATED_ARMS, PAIR_INITS
from vgrout.paths import repo_path


def train(cfg: GRPOConfig) -> RunResult:
    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed), random.seed(cfg.seed), np.random.seed(cfg.seed)
    run = open_run(cfg)
    if (run.path / "result.json").exists():
        return load_run(run.path)  # resume of a finished run: nothing left to do

    from vgrout.env import grade_many, load_hacks, load_problems
    from vgrout.lm.load import load_policy

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base, tok = load_policy(cfg.model, device=device)
    train_set = load_problems(repo_path(cfg.train_problems), list(cfg.modes))
    test_set = load_problems(repo_path(cfg.test_problems), list(cfg.modes), eval_markers=True)
    hacks = load_hacks() if cfg.teacher_n_per_prompt else {}
    pairs = load_run_pairs(cfg)
    policy = build_policy(cfg, base, tok, pairs)
    model = policy.model
    opt = torch.optim.AdamW(policy.all_params(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    init_values = [p.detach().clone() for p in policy.all_params()]
    router = Router(cfg, pairs)
    prompt_rng = random.Random(cfg.seed)
    grade_fn = functools.partial(grade_many, workers=cfg.workers)
    samplers = {v: policy.sampler(v) for v in ("trained", "deployed")}
    normaliser = float(cfg.prompts_per_step * cfg.group_size * cfg.max_new_tokens)
    state = {"step": 0, "teacher_low": 0}
    if cfg.resume:
        state = restore(run, policy, opt, sched, router, prompt_rng, state)
    if state["step"] == 0 and cfg.eval_every:  # the untrained baseline every curve starts from
        run.log_many("eval", evaluate_views(policy, tok, cfg, 0, train_set, test_set))

    bar = tqdm(
        range(state["step"] + 1, cfg.steps + 1),
        desc=f"grpo {cfg.arm}",
        initial=state["step"],
        total=cfg.steps,
    )
    for step in bar:
        # 1. generate and grade
        problems = prompt_rng.sample(train_set, cfg.prompts_per_step)
        groups, times = collect_groups(model, tok, problems, cfg, step, hacks, samplers, grade_fn)
        live = [g for g in groups if g.rewards().std() > 0]

        # 2. gate: a deployed-view pass gives gate features and behaviour log-probs
        t = time.perf_counter()
        batches = [group_batch(g, pad_id(tok), device) for g in live]
        passes = [deployed_pass(policy, g, b, router.site) for g, b in zip(live, batches)]
        feats = [f for _, f in passes]
        router.maybe_refresh(model, tok, step, next((f for f in feats if f is not None), None))
        zones, scores, thresholds = router.assign(
            feats, [[r.exploited for r in g.rollouts] for g in live]
        )
        times["gate"] = time.perf_counter() - t

        # 3. loss and backward, one masked pass per group
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        stats = [
            group_backward(policy, g, b, z, dep, cfg, normaliser, step)
            for g, b, z, (dep, _) in zip(live, batches, zones, passes)
        ]

        # 4. optimizer step
        grad_info = clip_and_measure(policy, cfg.grad_clip)
        lr = sched.get_last_lr()[0]
        opt.step()
        decay_toward_init(policy.all_params(), init_values, cfg.weight_decay * lr)
        sched.step()
        times["update"] = time.perf_counter() - t

        row = step_row(step, groups, live, zones, scores, thresholds, stats, grad_info, times, lr)
        state["teacher_low"] = teacher_tripwire(row, state["teacher_low"], step)
        run.log("steps", row)
        run.log_many("rollouts", rollout_rows(step, groups, live, zones, scores))
        bar.set_postfix(
            reward=f"{row['reward']:.2f}",
            hack=f"{row['hack']:.2f}",
            solve=f"{row['solve']:.2f}",
            route=f"{row['zone_route']:.2f}",
        )
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            run.log_many("eval", evaluate_views(policy, tok, cfg, step, train_set, test_set))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            state["step"] = step
            checkpoint(run, policy, opt, sched, router, prompt_rng, state, init_values)

    if cfg.heal_steps:
        run.log("steps", {"step": cfg.steps, "heal": retain_heal(policy, tok, pairs, cfg)})
    run.log_many("eval", evaluate_views(policy, tok, cfg, cfg.steps, train_set, test_set))
    export_final(policy, run)
    atomic_write_text(run.path / "result.json", json.dumps({"finished": True, "steps": cfg.steps}))
    return load_run(run.path)


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
