"""What a step does with the rollouts its monitor flags: route, penalize or screen.

A monitor is anything that flags rollouts as hacks: the gate's direction score
(routeA, with its Haar placebo as the control) or the true labels (oracle, with
random flags of the same count as the control). The router's flags arrive as
zones, a flag being "route"; `monitor_use` decides what a flag does:

- route (the project's method): the flagged rollout trains the quarantine only,
  which deployment deletes;
- penalty (the field's reward shaping): the flagged rollout's reward drops by
  `penalty` before the group's advantages are taken, and it trains like the rest;
- screen (the field's filtering): the flagged rollout is left out of the update,
  with no gradient and no part in its group's baseline.

Under penalty and screen no rollout is routed: every trained row absorbs (both
blocks learn) and the whole model ships (`GRPOConfig.ships`), so the three uses
of one monitor differ only in what a flag does.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from vgrout.grpo.gate import Gated


def use_flags(records: list[Gated], cfg) -> list[Gated]:
    """The gate's records with the flags put to `cfg.monitor_use` (route: unchanged)."""
    if cfg.monitor_use == "route":
        return records
    out = []
    for r in records:
        flagged = [z == "route" for z in r.zones]
        flags = torch.tensor(flagged)
        changes: dict = {"zones": ["absorb"] * len(flagged), "flagged": flagged}
        if cfg.monitor_use == "penalty":
            changes["reward_shift"] = -cfg.penalty * flags.float()
        else:  # screen
            changes["in_update"] = ~flags
        out.append(dataclasses.replace(r, **changes))
    return out
