"""Dr.GRPO with routed adapters, readable top to bottom.

One step: generate G rollouts per prompt -> grade -> skip zero-variance
groups -> gate (zones per rollout) -> one masked forward/backward per group
with PPO clip and k3 KL -> clip each block's gradient -> AdamW -> decay toward
init -> schedule. Helpers live beside the loop in this file and in
rollouts.py, router.py, loss.py, policy.py, runlog.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vgrout.config import GRPOConfig, resolve
from vgrout.evaluate import evaluate_views
from vgrout.heal import retain_heal
from vgrout.policy import Policy, build_policy
from vgrout.rollouts import collect_groups
from vgrout.router import Router
from vgrout.runlog import RunDir, atomic_write_text, read_jsonl, rng_state, set_rng_state
from vgrout.steplog import rollout_rows, step_row, teacher_tripwire
from vgrout.tokens import pad_id
from vgrout.update import (clip_and_measure, decay_toward_init, deployed_pass, group_backward,
                           group_batch, lr_factor)


@dataclass
class RunResult:
    run_dir: Path
    config: GRPOConfig
    steps: list[dict]
    evals: list[dict]


def train(cfg: GRPOConfig) -> RunResult:
    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed), random.seed(cfg.seed), np.random.seed(cfg.seed)
    run = open_run(cfg)
    if (run.path / "result.json").exists():
        return load_run(run.path)  # resume of a finished run: nothing left to do

    from vgrout.env import grade_many, load_hacks, load_problems
    from vgrout.models import load_policy

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base, tok = load_policy(cfg.model, device=device)
    train_set = load_problems(resolve(cfg.train_problems), list(cfg.modes))
    test_set = load_problems(resolve(cfg.test_problems), list(cfg.modes), eval_markers=True)
    hacks = load_hacks() if cfg.teacher_n_per_prompt else {}
    pairs = load_run_pairs(cfg)
    policy = build_policy(cfg, base, tok, pairs)
    model = policy.model
    opt = torch.optim.AdamW(policy.all_params(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    init_values = [p.detach().clone() for p in policy.all_params()]
    router = Router(cfg, pairs)
    prompt_rng = random.Random(cfg.seed)
    grade_fn = lambda items: grade_many(items, workers=cfg.workers)  # noqa: E731
    samplers = {v: policy.sampler(v) for v in ("full", "deployed")}
    normaliser = float(cfg.prompts_per_step * cfg.group_size * cfg.max_new_tokens)
    state = {"step": 0, "teacher_low": 0}
    if cfg.resume:
        state = restore(run, policy, opt, sched, router, prompt_rng, state)
    if state["step"] == 0 and cfg.eval_every:  # the untrained baseline every curve starts from
        run.log_many("eval", evaluate_views(policy, tok, cfg, 0, train_set, test_set))

    bar = tqdm(range(state["step"] + 1, cfg.steps + 1), desc=f"grpo {cfg.arm}",
               initial=state["step"], total=cfg.steps)
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
        zones, scores, thresholds = router.assign(feats, [[r.exploited for r in g.rollouts]
                                                          for g in live])
        times["gate"] = time.perf_counter() - t

        # 3. loss and backward, one masked pass per group
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        stats = [group_backward(policy, g, b, z, dep, cfg, normaliser, step)
                 for g, b, z, (dep, _) in zip(live, batches, zones, passes)]

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
        bar.set_postfix(reward=f"{row['reward']:.2f}", hack=f"{row['hack']:.2f}",
                        solve=f"{row['solve']:.2f}", route=f"{row['zone_route']:.2f}")
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


# --- run folder, checkpoints, resume -------------------------------------------------


def run_id(cfg: GRPOConfig) -> str:
    h = hashlib.sha256(cfg.replace(resume=False, run_dir="").to_json().encode()).hexdigest()[:6]
    arm = cfg.arm + ("-placebo" if cfg.placebo else "")
    return f"{arm}-{cfg.init}-s{cfg.seed}-{h}"


def open_run(cfg: GRPOConfig) -> RunDir:
    """The run folder; refuses to mix a fresh run into an old one's logs."""
    from vgrout.paths import RUNS

    run = RunDir(cfg.run_dir or RUNS / run_id(cfg))
    cfg_path = run.path / "config.json"
    if cfg_path.exists():
        old = GRPOConfig.from_json(cfg_path.read_text(), str(cfg_path))
        if not cfg.resume:
            raise FileExistsError(f"{run.path} already holds a run; pass resume=True to continue "
                                  "it or choose another run_dir")
        if old.replace(resume=False) != cfg.replace(resume=False):
            diff = [k for k, v in asdict(cfg).items() if k != "resume" and asdict(old)[k] != v]
            raise ValueError(f"{cfg_path}: resume with a different config (fields {diff})")
    else:
        atomic_write_text(cfg_path, cfg.to_json())
    return run


def adapter_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" in n}


def checkpoint(run: RunDir, policy: Policy, opt, sched, router: Router, prompt_rng,
               state: dict, init_values) -> None:
    run.save_checkpoint({
        "state": dict(state), "adapters": adapter_state(policy.model),
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "router": router.state_dict(), "rng": rng_state({"prompts": prompt_rng}),
        "init_values": [v.cpu() for v in init_values],
    })


def restore(run: RunDir, policy: Policy, opt, sched, router: Router, prompt_rng,
            state: dict) -> dict:
    """Load the newest checkpoint (if any) and cut the logs back to its step."""
    ck = run.load_checkpoint()
    if ck is None:
        if (run.path / "steps.jsonl").exists():
            warnings.warn(f"resume=True but {run.path} has no checkpoint: starting from step 1")
        run.truncate_to(-1)
        return state
    params = dict(policy.model.named_parameters())
    missing = set(ck["adapters"]) ^ {n for n in params if "lora_" in n}
    if missing:
        raise ValueError(f"{run.path}/ckpt.pt: adapter parameters do not match ({sorted(missing)[:3]})")
    with torch.no_grad():
        for n, v in ck["adapters"].items():
            params[n].copy_(v)
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    router.load_state_dict(ck["router"])
    set_rng_state(ck["rng"], {"prompts": prompt_rng})
    run.truncate_to(ck["state"]["step"])
    return dict(ck["state"])


def export_final(policy: Policy, run: RunDir) -> None:
    """The deployed block as a standard PEFT adapter, loadable on the original base."""
    if policy.routed:
        from vgrout.adapters import export_deployed
        export_deployed(policy.model, run.path / "deployed_adapter")
    else:
        policy.model.save_pretrained(run.path / "deployed_adapter")


def load_run_pairs(cfg: GRPOConfig):
    """Pairs the run needs: for the direction, a pair-based init, or retain-heal."""
    needs = (cfg.arm in ("routeA", "routeV") and not cfg.placebo) or cfg.heal_steps > 0 \
        or cfg.init in ("corda", "scorda", "scorda_rev")
    if not needs:
        return None
    from vgrout.pairs import load_pairs
    spec = cfg.pairs
    path, _, rest = spec.partition("#")
    return load_pairs(str(resolve(path)) + ("#" + rest if rest else ""))


def load_run(path: str | Path) -> RunResult:
    """A run's config and logs, for notebooks."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{path} is not a run folder (no config.json)")
    cfg = GRPOConfig.from_json(cfg_path.read_text(), str(cfg_path))
    logs = {n: read_jsonl(path / f"{n}.jsonl") if (path / f"{n}.jsonl").exists() else []
            for n in ("steps", "eval")}
    return RunResult(path, cfg, logs["steps"], logs["eval"])
