"""Rows for steps.jsonl and rollouts.jsonl, and the teacher tripwire."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from vgrout.names import ZONES


def _share(values, pred) -> float:
    values = list(values)
    return sum(1 for v in values if pred(v)) / len(values) if values else 0.0


@dataclass
class StepRecord:
    """What one step did, for its steps.jsonl and rollouts.jsonl rows."""

    step: int
    groups: list
    """Every `rollouts.Group` of the step."""
    zones: list[list[str] | None]
    """Per group, its rollouts' zones (None for a skipped, zero-variance group)."""
    scores: list[Tensor | None]
    """Per group, its gate scores [G] (None without a score gate, or for a skipped group)."""
    thresholds: tuple[float, float] | None
    """The score gate's (low, high) thresholds, None on arms without one."""
    stats: list[dict]
    """Per live group: loss, kl, clip_frac (and teacher_logp) from `update.group_backward`."""
    grad: dict
    """Pre-clip block gradient norms and quarantine shares (`update.clip_and_measure`)."""
    times: dict[str, float]
    lr: float
    flags: list[list[bool] | None] | None = None
    """Per group, its rollouts' monitor flags (None for a skipped group); None: a flag
    is a route, as on every arm that routes what its monitor flags."""

    @property
    def live(self) -> list[tuple]:
        """(group, flags, scores) of every gated group."""
        flags = self.flags or [None if z is None else [v == "route" for v in z] for z in self.zones]
        return [(g, f, s) for g, f, s in zip(self.groups, flags, self.scores) if f is not None]


def gate_log(groups: list, gated: list) -> tuple[list, list, list]:
    """Zones, scores and flags per group of the step from the gate's records (None where
    skipped)."""
    by_group = {id(r.group): r for r in gated}
    found = [by_group.get(id(g)) for g in groups]
    return (
        [None if r is None else r.zones for r in found],
        [None if r is None else r.scores for r in found],
        [None if r is None else r.flags() for r in found],
    )


def gate_quality(live: list[tuple]) -> dict:
    """AUROC of the gate score and F0.5 of its flags against true hack labels.

    live: (group, flags, scores) of the gated groups (scores None off the score
    gates). Measurement only: the labels never feed back into routing (except on
    the oracle arm, which is defined by them).
    """
    from vgrout.directions.metrics import auroc

    labels = [r.exploited for g, _, _ in live for r in g.rollouts]
    routed = [bool(f) for _, fs, _ in live for f in fs]
    scores = [s for _, _, s in live]
    out: dict[str, float | None] = {"gate_auroc": None, "gate_f05": None}
    tp = sum(1 for y, z in zip(labels, routed) if y and z)
    fp = sum(1 for y, z in zip(labels, routed) if z and not y)
    fn = sum(1 for y, z in zip(labels, routed) if y and not z)
    if tp + fp + fn > 0:
        out["gate_f05"] = 1.25 * tp / (1.25 * tp + 0.25 * fn + fp)
    if scores and scores[0] is not None and 0 < sum(labels) < len(labels):
        flat = np.concatenate([s.numpy() for s in scores])
        out["gate_auroc"] = auroc(flat, np.array(labels, dtype=int))
    return out


def step_row(rec: StepRecord) -> dict:
    """One steps.jsonl row: rates over the step's sampled (non-teacher) rollouts, zone
    shares, gate quality, gradient norms, loss terms and timings."""
    live, stats, thresholds = rec.live, rec.stats, rec.thresholds
    students = [r for g in rec.groups for r in g.rollouts if r.sampler != "teacher"]
    flat_zones = [z for zs in rec.zones if zs is not None for z in zs]
    flat_flags = [f for _, fs, _ in live for f in fs]
    row = {
        "step": rec.step,
        "lr": rec.lr,
        "reward": float(np.mean([r.reward for r in students])),
        "hack": _share(students, lambda r: r.exploited),
        "solve": _share(students, lambda r: r.gt_correct),
        "compile": _share(students, lambda r: r.format_ok),
        "live_groups": len(live),
        "groups": len(rec.groups),
        **{f"zone_{z}": _share(flat_zones, lambda v, z=z: v == z) for z in ZONES},
        "flagged": _share(flat_flags, bool),
        "threshold_low": thresholds[0] if thresholds else None,
        "threshold_high": thresholds[1] if thresholds else None,
        **gate_quality(live),
        **rec.grad,
        "loss": float(np.sum([s["loss"] for s in stats])) if stats else 0.0,
        "kl": float(np.mean([s["kl"] for s in stats])) if stats else 0.0,
        "clip_frac": float(np.mean([s["clip_frac"] for s in stats])) if stats else 0.0,
        **{f"time_{k}": v for k, v in rec.times.items()},
    }
    teacher = [s["teacher_logp"] for s in stats if "teacher_logp" in s]
    row["teacher_logp"] = float(np.mean(teacher)) if teacher else None
    return row


def rollout_rows(rec: StepRecord) -> list[dict]:
    """Every rollout of the step; skipped (zero-variance) groups get zone None."""
    rows = []
    flags = rec.flags or [None] * len(rec.groups)
    for g, z, s, f in zip(rec.groups, rec.zones, rec.scores, flags):
        for i, r in enumerate(g.rollouts):
            rows.append(
                {
                    "step": rec.step,
                    "problem_id": r.problem_id,
                    "mode": r.mode,
                    "sampler": r.sampler,
                    "prompt": g.problem.plain_messages
                    if g.mode != g.problem.mode
                    else g.problem.messages,
                    "completion": r.text,
                    "reward": r.reward,
                    "format_ok": r.format_ok,
                    "gt_correct": r.gt_correct,
                    "exploited": r.exploited,
                    "zone": z[i] if z else None,
                    "score": float(s[i]) if s is not None else None,
                    **({"flagged": f[i]} if f is not None else {}),
                }
            )
    return rows


def teacher_tripwire(
    row: dict, low_steps: int, step: int, patience: int = 3, floor: float = -12.0
) -> int:
    """Warn when the policy's log-prob of teacher demos collapses; abort if it persists."""
    lp = row.get("teacher_logp")
    if lp is None:
        return 0
    if not np.isfinite(lp):
        raise FloatingPointError(f"teacher demo log-prob is non-finite at step {step}")
    if lp >= floor:
        return 0
    low_steps += 1
    if low_steps >= patience:
        raise RuntimeError(
            f"teacher demo log-prob collapsed: mean {lp:.2f} nats/token < {floor} "
            f"for {low_steps} steps (step {step}); off-policy demos are no longer "
            "in the policy's support, the PPO ratio is meaningless"
        )
    warnings.warn(f"teacher demo log-prob low at step {step}: {lp:.2f} nats/token", stacklevel=2)
    return low_steps
