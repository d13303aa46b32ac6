"""A run's folder: config, jsonl logs, atomic checkpoints, and resume.

Layout of runs/<run_id>/:
  config.json     the GRPOConfig
  steps.jsonl     one row per step (metrics, zone shares, timings)
  rollouts.jsonl  every rollout (text, labels, score, zone)
  eval.jsonl      one row per (step, split, view) evaluation
  machine.jsonl   one row per start or resume: its step, CPU model and flags, torch,
                  its kernels and threads, and the code's git revision (vgrout.machine)
  ckpt.pt         newest checkpoint (adapters, optimizer, scheduler, RNG, gate)
  result.json     written when the run finishes

Logs are appended a line at a time; a checkpoint is written to a temp file and
renamed, so a crash leaves either the old or the new one. On resume every log
is cut back to the checkpoint's step (rewritten atomically), so the rows that a
killed run wrote after its last checkpoint are not duplicated.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vgrout.files import atomic_write, atomic_write_text, iter_jsonl
from vgrout.grpo.config import GRPOConfig
from vgrout.grpo.policy import Policy
from vgrout.grpo.router import Router

LOGS = ("steps", "rollouts", "eval")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a run log; a malformed line raises with its file and line number."""
    return [row for _, row in iter_jsonl(path)]


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def log(self, name: str, row: dict) -> None:
        with open(self.path / f"{name}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def log_many(self, name: str, rows: list[dict]) -> None:
        with open(self.path / f"{name}.jsonl", "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def truncate_to(self, step: int) -> None:
        """Keep only log rows with row["step"] <= step (drops a torn last line)."""
        for name in LOGS:
            p = self.path / f"{name}.jsonl"
            if not p.exists():
                continue
            kept = []
            lines = p.read_text().splitlines()
            for i, line in enumerate(lines):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    if i == len(lines) - 1:
                        break  # torn by a crash mid-append
                    raise ValueError(f"{p}:{i + 1}: malformed JSON in a run log") from None
                if row.get("step", 0) <= step:
                    kept.append(line + "\n")
            atomic_write_text(p, "".join(kept))

    def save_checkpoint(self, state: dict) -> None:
        atomic_write(self.path / "ckpt.pt", lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self) -> dict | None:
        p = self.path / "ckpt.pt"
        return torch.load(p, weights_only=False) if p.exists() else None


def rng_state(py_rngs: dict[str, random.Random]) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **{f"rng:{k}": r.getstate() for k, r in py_rngs.items()},
    }


def set_rng_state(state: dict, py_rngs: dict[str, random.Random]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, r in py_rngs.items():
        r.setstate(state[f"rng:{k}"])


@dataclass
class RunResult:
    run_dir: Path
    config: GRPOConfig
    steps: list[dict]
    evals: list[dict]
    already_finished: bool = False
    """The run had finished before this call, which only read it back."""


def run_id(cfg: GRPOConfig) -> str:
    h = hashlib.sha256(cfg.replace(resume=False, run_dir="").to_json().encode()).hexdigest()[:6]
    arm = cfg.arm + ("-placebo" if cfg.placebo else "")
    return f"{arm}-{cfg.init}-s{cfg.seed}-{h}"


def open_run(cfg: GRPOConfig) -> RunDir:
    """The run folder; refuses to mix a fresh run into an old one's logs.

    The folder may already hold a run of this very config: a finished one is
    read back by `train` (running the same command twice is safe), an
    unfinished one continues only with resume, since a fresh start would
    append to its logs. A run of another config is never touched.
    """
    from vgrout.paths import RUNS

    run = RunDir(cfg.run_dir or RUNS / run_id(cfg))
    cfg_path = run.path / "config.json"
    if not cfg_path.exists():
        atomic_write_text(cfg_path, cfg.to_json())
        return run
    old = GRPOConfig.from_json(cfg_path.read_text(), str(cfg_path))
    # resume says how to open the folder and run_dir names it (relative or absolute,
    # the same folder): neither is part of what the run is
    same_anyway = ("resume", "run_dir")
    diff = [k for k, v in asdict(cfg).items() if k not in same_anyway and asdict(old)[k] != v]
    if diff:
        raise ValueError(
            f"{cfg_path}: this folder holds a run of a different config (fields {diff}); "
            "choose another run_dir"
        )
    if not cfg.resume and not (run.path / "result.json").exists():
        raise FileExistsError(
            f"{run.path} holds an unfinished run of this config; continue it with "
            "resume=True (--resume on the command line) or choose another run_dir"
        )
    return run


def record_machine(run: RunDir, step: int) -> None:
    """Append where this start (step 0) or resume (its checkpoint's step) computes.

    A trajectory depends on the CPU's float rounding (which kernels torch picks,
    how many threads reduce), so a run says where each stretch of it was computed,
    and a run resumed elsewhere says from which step; and with which code
    (`revision`: the commit, `dirty`: whether tracked files differed from it), so a
    grid stored by another checkout than trained it still says what trained it.
    Called after the threads are set.
    """
    from vgrout.machine import git_revision, machine_record

    rev = git_revision()
    row = {"step": step, **machine_record(), "revision": rev["commit"], "dirty": rev["dirty"]}
    run.log("machine", row)


def adapter_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" in n}


@dataclass
class TrainState:
    """Everything a run carries from step to step, i.e. what a checkpoint holds."""

    policy: Policy
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    router: Router
    prompt_rng: random.Random
    """Draws each step's prompts (its state is checkpointed with the torch RNGs)."""
    init_values: list[torch.Tensor]
    """The trainable parameters at init: weight decay pulls toward them."""
    step: int = 0
    """The last finished step."""
    teacher_low: int = 0
    """Consecutive steps the teacher demos' log-prob sat below the tripwire floor."""


def checkpoint(run: RunDir, ts: TrainState) -> None:
    run.save_checkpoint(
        {
            "state": {"step": ts.step, "teacher_low": ts.teacher_low},
            "adapters": adapter_state(ts.policy.model),
            "optimizer": ts.opt.state_dict(),
            "scheduler": ts.sched.state_dict(),
            "router": ts.router.state_dict(),
            "rng": rng_state({"prompts": ts.prompt_rng}),
            "init_values": [v.cpu() for v in ts.init_values],
        }
    )


def restore(run: RunDir, ts: TrainState) -> None:
    """Load the newest checkpoint (if any) into `ts` and cut the logs back to its step."""
    ck = run.load_checkpoint()
    if ck is None:
        if (run.path / "steps.jsonl").exists():
            warnings.warn(
                f"resume=True but {run.path} has no checkpoint: starting from step 1", stacklevel=3
            )
        run.truncate_to(-1)
        return
    params = dict(ts.policy.model.named_parameters())
    missing = set(ck["adapters"]) ^ {n for n in params if "lora_" in n}
    if missing:
        raise ValueError(
            f"{run.path}/ckpt.pt: adapter parameters do not match ({sorted(missing)[:3]})"
        )
    with torch.no_grad():
        for n, v in ck["adapters"].items():
            params[n].copy_(v)
    ts.opt.load_state_dict(ck["optimizer"])
    ts.sched.load_state_dict(ck["scheduler"])
    ts.router.load_state_dict(ck["router"])
    set_rng_state(ck["rng"], {"prompts": ts.prompt_rng})
    ts.step, ts.teacher_low = ck["state"]["step"], ck["state"]["teacher_low"]
    run.truncate_to(ts.step)


def export_final(policy: Policy, run: RunDir) -> None:
    """The deployed block as a standard PEFT adapter, loadable on the original base."""
    if policy.routed:
        from vgrout.adapters import export_deployed

        export_deployed(policy.model, run.path / "deployed_adapter")
    else:
        policy.model.save_pretrained(run.path / "deployed_adapter")


def load_run(path: str | Path) -> RunResult:
    """A run's config and logs, for notebooks."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{path} is not a run folder (no config.json)")
    cfg = GRPOConfig.from_json(cfg_path.read_text(), str(cfg_path))
    logs = {
        n: read_jsonl(path / f"{n}.jsonl") if (path / f"{n}.jsonl").exists() else []
        for n in ("steps", "eval")
    }
    return RunResult(path, cfg, logs["steps"], logs["eval"])
