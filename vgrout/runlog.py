"""A run's folder: config, jsonl logs, atomic checkpoints, and resume.

Layout of runs/<run_id>/:
  config.json     the GRPOConfig
  steps.jsonl     one row per step (metrics, zone shares, timings)
  rollouts.jsonl  every rollout (text, labels, score, zone)
  eval.jsonl      one row per (step, split, view) evaluation
  ckpt.pt         newest checkpoint (adapters, optimizer, scheduler, RNG, gate)
  result.json     written when the run finishes

Logs are appended a line at a time; a checkpoint is written to a temp file and
renamed, so a crash leaves either the old or the new one. On resume every log
is cut back to the checkpoint's step (rewritten atomically), so the rows that a
killed run wrote after its last checkpoint are not duplicated.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from vgrout.atomic import atomic_write, atomic_write_text  # noqa: F401 (re-exported)
from vgrout.jsonl import iter_jsonl

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
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            **{f"rng:{k}": r.getstate() for k, r in py_rngs.items()}}


def set_rng_state(state: dict, py_rngs: dict[str, random.Random]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, r in py_rngs.items():
        r.setstate(state[f"rng:{k}"])
