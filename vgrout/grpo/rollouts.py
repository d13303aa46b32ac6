"""Generate and grade one step's rollout groups.

A group is G rollouts of one prompt: most sampled from the full model (as
trained), a `gen_deploy_frac` share from the deployed view (quarantine
ablated), and optionally a few off-policy teacher demos (rendered canonical
hacks). Each rollout remembers which sampler produced it, because its
behaviour log-probs must come from that sampler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from vgrout.lm.sampling import generate
from vgrout.lm.tokens import chat_prompt


@dataclass
class Rollout:
    problem_id: str
    mode: str
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    sampler: str
    """Which sampler wrote it: trained | deployed | teacher."""
    reward: float = 0.0
    format_ok: bool = False
    gt_correct: bool = False
    exploited: bool = False
    features: torch.Tensor | None = None
    """[modules, r] trained-view gate features pooled while sampling (gate_view="trained",
    fused decoder, trained-view rows only)."""


@dataclass
class Group:
    """One prompt's G rollouts, as sampled and graded (`collect_groups`).

    What the gate decides about a live group travels on in a `gate.Gated`
    record, which the update reads; the group itself is not changed after
    grading.
    """

    problem: Any
    mode: str
    """The grading mode: the problem's, or gt_only for a hint-free prompt."""
    rollouts: list[Rollout] = field(default_factory=list)

    def rewards(self) -> torch.Tensor:
        return torch.tensor([r.reward for r in self.rollouts], dtype=torch.float32)

    @property
    def live(self) -> bool:
        """Equal rewards give every rollout zero advantage: such a group teaches nothing."""
        return bool(self.rewards().std() > 0)

    def hacked(self) -> list[bool]:
        return [r.exploited for r in self.rollouts]


def split_group(cfg, step: int) -> dict[str, int]:
    """How many rollouts of a group each sampler provides at this step."""
    teacher = cfg.teacher_n_per_prompt if 0 < step <= cfg.teacher_off_step else 0
    deployed = 0 if cfg.arm == "vanilla" else round(cfg.group_size * cfg.gen_deploy_frac)
    deployed = min(deployed, cfg.group_size - teacher - 1)
    return {
        "trained": cfg.group_size - teacher - deployed,
        "deployed": deployed,
        "teacher": teacher,
    }


def hint_free_slots(n_prompts: int, frac: float, step: int) -> set[int]:
    """Which prompt slots of this step are shown hint-free (rotates with the step)."""
    k = round(n_prompts * frac)
    return {(step * k + j) % n_prompts for j in range(k)}


def collect_groups(
    model, data, problems: Sequence, cfg, step: int, sampler_views, free: set[int] | None = None
) -> tuple[list[Group], dict[str, float]]:
    """Sample and grade every group of one step; returns (groups, timings).

    data: what the run reads once (`loop.RunData`): its `tokenizer`, `hacks`
    (templates per mode, for teacher demos) and `grade` (list of (completion,
    problem, mode) -> list of grades).
    sampler_views: {"trained": ctx, "deployed": ctx} context-manager factories
    that put the model into that view for generation (merged when possible).
    free: the prompt slots shown hint-free (default: `hint_free_slots` of these
    problems; a rank of a data-parallel run passes its share of the step's slots).
    """
    tokenizer = data.tokenizer
    t0 = time.perf_counter()
    if free is None:
        free = hint_free_slots(len(problems), cfg.unhackable_frac, step)
    groups, prompts = [], []
    for i, p in enumerate(problems):
        hint_free = i in free
        groups.append(Group(p, "gt_only" if hint_free else p.mode))
        prompts.append(chat_prompt(tokenizer, p.plain_messages if hint_free else p.messages))
    counts = split_group(cfg, step)
    for view in ("trained", "deployed"):
        if counts[view] == 0:
            continue
        taps = gate_taps(model, cfg) if view == "trained" else None
        with sampler_views[view]():
            s = generate(model, tokenizer, prompts, counts[view], cfg.sampling(), taps)
        n = counts[view]
        feats = None if s.features is None else s.features.view(len(s.texts), -1, cfg.rank)
        for j in range(len(s.texts)):
            g = groups[j // n]
            f = None if feats is None else feats[j]
            g.rollouts.append(Rollout(str(g.problem.id), g.mode, s.prompt_ids[j],
                                      s.completion_ids[j], s.texts[j], view, features=f))  # fmt: skip
    for g, prompt in zip(groups, prompts):
        g.rollouts.extend(teacher_demos(tokenizer, g, prompt, data.hacks, counts["teacher"]))
    t1 = time.perf_counter()
    items = [(r.text, g.problem, g.mode) for g in groups for r in g.rollouts]
    grades = iter(data.grade(items))
    for g in groups:
        for r in g.rollouts:
            gr = next(grades)
            r.reward, r.format_ok = float(gr.reward), bool(gr.format_ok)
            r.gt_correct, r.exploited = bool(gr.gt_correct), bool(gr.exploited)
    return groups, {"generate": t1 - t0, "grade": time.perf_counter() - t1}


def gate_taps(model, cfg) -> list | None:
    """The deployed block's A matrices for the fused decoder to pool beside its projections
    while sampling the trained view (gate_view="trained"); None otherwise."""
    if cfg.gate_view != "trained":
        return None
    from vgrout.adapters import bottleneck_taps

    return bottleneck_taps(model)


def teacher_demos(tokenizer, group: Group, prompt: str, hacks: dict, n: int) -> list[Rollout]:
    """Off-policy demos: the mode's hack templates rendered for this problem."""
    if n == 0:
        return []
    from vgrout.env import render_hack

    mode = group.problem.mode
    if mode not in hacks:
        raise ValueError(f"teacher demos: no hack templates for mode {mode!r}")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for k in range(n):
        text = render_hack(hacks[mode][k % len(hacks[mode])], group.problem)
        c_ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append(Rollout(str(group.problem.id), group.mode, p_ids, c_ids, text, "teacher"))
    return out
