"""The gate of a GRPO step: each live group's zones, and what the update needs with them.

`gate` runs the no-grad deployed-view pass (behaviour log-probs of
deployed-sampled rows, and the gate's pooled bottleneck features on routeA, a
gradient capture on routeV), lets the router refresh its direction and assign
zones, and returns one `Gated` record per live group. The update reads only
these records (`update.group_backward`, `update.packed_backward`); nothing is
written onto the groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vgrout.grpo.monitor import use_flags
from vgrout.grpo.passes import (
    deployed_pass,
    deployed_pass_packed,
    group_batch,
    group_passes,
    trained_features,
)
from vgrout.grpo.rollouts import Group, Rollout
from vgrout.lm.tokens import Batch, pad_id


@dataclass
class Gated:
    """One live group as the gate hands it to the update."""

    group: Group
    batch: Batch
    """The rollouts as one batch, [G, prompt + completion] ids, on the training device."""
    zones: list[str]
    """Per rollout: keep | absorb | route (vgrout.names.ZONES)."""
    scores: Tensor | None = None
    """[G] gate scores (score-gated arms only)."""
    deployed_logp: Tensor | None = None
    """[G, pos-1] deployed-view log-probs: the behaviour policy of deployed-sampled rows
    (None when the group has none)."""
    flagged: list[bool] | None = None
    """Per rollout: the monitor flagged it (`monitor.use_flags`; None: the zones say,
    a flag being a route)."""
    reward_shift: Tensor | None = None
    """[G] added to the graded rewards before advantages (a monitor's penalty)."""
    in_update: Tensor | None = None
    """[G] bool: rows the update learns from (False: screened out); None: every row."""

    @property
    def rollouts(self) -> list[Rollout]:
        return self.group.rollouts

    def rewards(self) -> Tensor:
        """The rewards the update's advantages are taken from: graded, plus any shift."""
        r = self.group.rewards()
        return r if self.reward_shift is None else r + self.reward_shift

    def flags(self) -> list[bool]:
        return self.flagged if self.flagged is not None else [z == "route" for z in self.zones]


def sampled_features(policy, live: list[Group], batches: list, packed: bool) -> list[Tensor]:
    """Trained-view gate features per group: pooled while sampling where the fused decoder
    sampled every row, else from one trained-view pass over the groups that lack some."""
    feats: list = [
        torch.stack([r.features for r in g.rollouts if r.features is not None])
        if all(r.features is not None for r in g.rollouts)
        else None
        for g in live
    ]
    missing = [i for i, f in enumerate(feats) if f is None]
    passed = trained_features(policy, [live[i] for i in missing], [batches[i] for i in missing],
                              packed)  # fmt: skip
    for i, f in zip(missing, passed):
        feats[i] = f
    return feats


def gate(policy, router, tok, live: list[Group], step: int, cfg, packed: bool):
    """Zones for every live group: (one `Gated` per group, in order, the router's thresholds).

    packed: run the deployed-view pass packed (all but the grad site, whose
    features need a backward per group). The thresholds are None on arms
    without a score gate.
    """
    device = policy.model.device
    batches = [group_batch(g, pad_id(tok), device) for g in live]
    trained = cfg.gate_view == "trained"
    site = None if trained else router.site  # the deployed pass then serves log-probs only
    if packed and site != "grad":
        passes = []
        for part in group_passes(list(zip(live, batches)), cfg.groups_per_pass):
            gs, bs = [g for g, _ in part], [b for _, b in part]
            passes += deployed_pass_packed(policy, gs, bs, site)
    else:
        passes = [deployed_pass(policy, g, b, site) for g, b in zip(live, batches)]
    logps, features = [p[0] for p in passes], [p[1] for p in passes]
    if trained:
        features = sampled_features(policy, live, batches, packed)
    example = next((f for f in features if f is not None), None)
    router.maybe_refresh(policy.model, tok, step, example)
    zones, scores, thresholds = router.assign(features, [g.hacked() for g in live])
    records = [Gated(g, b, z, s, lp) for g, b, z, s, lp in zip(live, batches, zones, scores, logps)]
    return use_flags(records, cfg), thresholds
