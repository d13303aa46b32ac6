"""The gate inside TRL: zones for one generation batch, through the project loop's functions.

TRL splits a generation batch over its processes: with `n` rows each,
process p holds rows p*n .. p*n+n-1 of the global batch, and a prompt's G
generations are consecutive rows that may lie on two processes. As the
project loop's data-parallel router does (`vgrout.grpo.distributed`), each
process runs the deployed-view pass over its own rows of live groups
(`local_features`), the features and labels of every process are gathered in
process order, which is the global row order, and every process routes all
groups at once (`route_groups`): the router's score buffer, thresholds, zones
and RNG evolve identically on every process.

A group whose rewards are all equal teaches nothing (zero advantage); as in
the project's loop it is not gated (no pass, no score in the buffer, not in
the zone shares). Its rows train in the absorb zone, the trained view TRL
would use for them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import Tensor

from vgrout.grpo.passes import deployed_pass, deployed_pass_packed, group_batch, group_passes
from vgrout.grpo.rollouts import Group, Rollout
from vgrout.grpo.steplog import gate_quality
from vgrout.lm.tokens import pad_id
from vgrout.names import ZONES

UNGATED = "absorb"
"""The zone of rows that are not gated: dead groups, and TRL's evaluation batches."""


@dataclass
class GateRecord:
    """What the gate decided for one generation batch, over every process's rows."""

    step: int
    zones: list[str]
    """Per row of the global batch, in generation order."""
    gated: list[bool]
    """Per row: its group was live and went through the router."""
    scores: list[float | None]
    """Per row: the gate score (routeA), else None."""
    thresholds: tuple[float, float] | None
    metrics: dict[str, float]
    """routing/... values logged through TRL's metrics."""


def batch_rows(out: dict) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, completion ids) of every row of TRL's generation output, unpadded."""
    keep_p, keep_c = out["prompt_mask"].bool().cpu(), out["completion_mask"].bool().cpu()
    prompts = [ids[m].tolist() for ids, m in zip(out["prompt_ids"].cpu(), keep_p)]
    completions = [ids[m].tolist() for ids, m in zip(out["completion_ids"].cpu(), keep_c)]
    return prompts, completions


def live_groups(rewards: Tensor, group_size: int) -> list[bool]:
    """Per group of the global batch: rewards that differ (the project loop's `Group.live`)."""
    if rewards.numel() % group_size:
        raise ValueError(
            f"gate: {rewards.numel()} rewards do not split into groups of {group_size}"
        )
    return [bool(r.std() > 0) for r in rewards.float().cpu().view(-1, group_size)]


def _rollout(prompt: list[int], completion: list[int], reward=0.0, hacked=False) -> Rollout:
    return Rollout("", "", prompt, completion, "", "trained", reward=reward, exploited=hacked)


def local_features(
    policy, tokenizer, rows: tuple[list, list], first: int, live: list[bool], routing, packed: bool
) -> Tensor:
    """Deployed-view bottleneck features [rows, modules, r] of this process's rows.

    rows: (prompt ids, completion ids) of the local rows, global rows first..;
    live: per global group. Rows of dead groups stay zero (they are not gated).
    Local rows of one group form one group here (a group split over processes
    is a partial group on each), so each prompt runs once per pass.
    """
    prompts, completions = rows
    g_size = routing.group_size
    segments: dict[int, list[int]] = {}
    for i in range(len(prompts)):
        k = (first + i) // g_size
        if live[k]:
            segments.setdefault(k, []).append(i)
    groups = [Group(None, "", [_rollout(prompts[i], completions[i]) for i in idx])
              for idx in segments.values()]  # fmt: skip
    batches = [group_batch(g, pad_id(tokenizer), policy.model.device) for g in groups]
    if packed:
        passes = []
        for part in group_passes(list(zip(groups, batches)), routing.groups_per_pass):
            passes += deployed_pass_packed(
                policy, [g for g, _ in part], [b for _, b in part], "bottleneck"
            )
    else:
        passes = [deployed_pass(policy, g, b, "bottleneck") for g, b in zip(groups, batches)]
    out = torch.zeros(len(prompts), *feature_shape(policy, routing))
    for idx, (_, feats) in zip(segments.values(), passes):
        out[idx] = feats.float().cpu()
    return out


def feature_shape(policy, routing) -> tuple[int, int]:
    """(modules, r) of one row's gate features, known before any pass (every process
    must gather the same shape, also one without live rows)."""
    from vgrout.adapters import bottleneck_modules

    return len(bottleneck_modules(policy.model)), routing.rank


def route_groups(
    router,
    policy,
    tokenizer,
    step: int,
    rewards: Tensor,
    hacked: list[bool] | None,
    features: Tensor | None,
    share_direction=None,
) -> GateRecord:
    """Zones of every row of the global batch (every process calls this with the same data).

    rewards [rows]; hacked [rows], the true labels (the oracle's input and the
    gate-quality measurement) or None where no reward function gives them;
    features [rows, modules, r] for routeA, else None.
    share_direction(direction) -> direction: makes a refreshed direction equal on
    every process (a broadcast from the first); None in one process.
    """
    g_size = router.cfg.group_size
    live = live_groups(rewards, g_size)
    groups, feats = [], []
    for k, is_live in enumerate(live):
        rows = range(k * g_size, (k + 1) * g_size)
        g = Group(SimpleNamespace(id=str(k)), "")
        g.rollouts = [
            _rollout([], [], float(rewards[i]), hacked is not None and bool(hacked[i]))
            for i in rows
        ]
        if is_live:
            groups.append(g)
            feats.append(None if features is None else features[rows.start : rows.stop])
    example = next((f for f in feats if f is not None), None)
    if router.maybe_refresh(policy.model, tokenizer, step, example) and share_direction:
        router.direction = share_direction(router.direction)
    zones, scores, thresholds = router.assign(feats, [g.hacked() for g in groups])
    gated = list(zip(groups, zones, scores))  # (group, zones, scores)
    by_group = iter(gated)
    row_zones: list[str] = []
    row_scores: list[float | None] = []
    for is_live in live:
        if not is_live:
            row_zones += [UNGATED] * g_size
            row_scores += [None] * g_size
            continue
        _, z, sc = next(by_group)
        row_zones += z
        row_scores += sc.tolist() if sc is not None else [None] * g_size
    return GateRecord(
        step=step,
        zones=row_zones,
        gated=[is_live for is_live in live for _ in range(g_size)],
        scores=row_scores,
        thresholds=thresholds,
        metrics=gate_metrics(gated, thresholds, labelled=hacked is not None),
    )


def gate_metrics(gated: list[tuple], thresholds, labelled: bool) -> dict[str, float]:
    """Zone shares over gated rows, thresholds and (with true labels) gate quality.

    gated: (group, zones, scores) of the gated groups. NaN where a value is
    undefined (no gated row, no threshold yet), which TRL's logger leaves out of
    its per-logging-step mean.
    """
    nan = float("nan")
    zones = [z for _, zs, _ in gated for z in zs]
    out = {f"routing/zone_{z}": (zones.count(z) / len(zones) if zones else nan) for z in ZONES}
    out["routing/live_groups"] = float(len(gated))
    low, high = thresholds if thresholds else (nan, nan)
    out["routing/threshold_low"], out["routing/threshold_high"] = low, high
    flags = [(g, [z == "route" for z in zs], sc) for g, zs, sc in gated]
    quality = gate_quality(flags) if labelled and gated else {}
    for key in ("gate_auroc", "gate_f05"):
        value = quality.get(key)
        out[f"routing/{key}"] = nan if value is None else float(value)
    return out
