"""What every rank of a data-parallel run shares: its run folder and its router.

`vgrout.grpo.distributed.World` builds them in place of a plain `RunDir` and
`Router` when there is more than one rank (its docstring says how the ranks
divide a step); here rank 0 alone writes the folder, and the router sees every
rank's live groups, so its state evolves identically on each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch

from vgrout.grpo.router import Router
from vgrout.grpo.rundir import RunDir

if TYPE_CHECKING:
    from vgrout.grpo.distributed import World


class SharedRunDir(RunDir):
    """The run folder as every rank sees it: rank 0 writes, the others only read.

    A checkpoint carries every rank's RNG state (gathered here: each rank
    passes its own in state["rng"]) and the sampling seeds, and is written
    only after the ranks' adapters are checked to agree.
    """

    def __init__(self, path, world: World):
        super().__init__(path)
        self.world = world
        self.seeds: list[int] = []

    def log(self, name: str, row: dict) -> None:
        if self.world.main:
            super().log(name, row)

    def log_many(self, name: str, rows: list[dict]) -> None:
        if self.world.main:
            super().log_many(name, rows)

    def truncate_to(self, step: int) -> None:
        if self.world.main:
            super().truncate_to(step)

    def save_checkpoint(self, state: dict) -> None:
        adapters = _fingerprint(state["adapters"].values())
        parts = self.world.all_gather_object((state["rng"], adapters), "checkpoint")
        bad = [r for r, p in enumerate(parts) if p[1] != parts[0][1]]
        if bad:
            raise RuntimeError(
                f"step {state['state']['step']}: the adapters of rank(s) {bad} differ from "
                "rank 0's (the ranks no longer train one model)"
            )
        if self.world.main:
            world = {"size": self.world.size, "seeds": self.seeds, "rng": [p[0] for p in parts]}
            super().save_checkpoint({**state, "world": world})


class SharedRouter(Router):
    """The run's router on a rank of a data-parallel run: a `Router` whose refresh and
    zone assignment see every rank's live groups (see the module docstring).

    Built by `World.router` in place of a `Router`; state, checkpoints and the
    score buffer are the plain router's, identical on every rank.
    """

    def __init__(self, cfg, pairs, world: World):
        super().__init__(cfg, pairs)
        self.world = world

    def maybe_refresh(self, model, tokenizer, step: int, example) -> bool:
        """Refresh when any rank has a live group; rank 0's direction goes to every rank."""
        shapes = self.world.all_gather_object(
            None if example is None else (tuple(example.shape), example.dtype), "refresh"
        )
        first = next((s for s in shapes if s is not None), None)
        if example is None and first is not None:
            example = torch.zeros(first[0], dtype=first[1])  # the refresh reads its shape only
        refreshed = super().maybe_refresh(model, tokenizer, step, example)
        if refreshed:
            d = cast(torch.Tensor, self.direction)
            self.direction = self.world.broadcast_object(d.cpu(), "direction").to(d.device)
        return refreshed

    def assign(self, feats, hacked):
        """Zones of every rank's groups at once; returns this rank's (zones, scores, thresholds)."""
        mine = [None if f is None else f.detach().cpu() for f in feats]
        parts = self.world.all_gather_object((mine, list(hacked)), "route")
        every_feat = [f for p in parts for f in p[0]]
        every_hacked = [h for p in parts for h in p[1]]
        zones, scores, thresholds = super().assign(every_feat, every_hacked)
        first = sum(len(p[0]) for p in parts[: self.world.rank])
        here = slice(first, first + len(feats))
        return zones[here], scores[here], thresholds


@torch.no_grad()
def _fingerprint(tensors) -> list[tuple[float, float]]:
    """(sum, sum of squares) in float64 of each tensor, in chunks (no full float64 copy)."""
    out = []
    for t in tensors:
        s = q = 0.0
        for chunk in t.detach().reshape(-1).split(1 << 24):
            c = chunk.double()
            s, q = s + float(c.sum()), q + float(c.square().sum())
        out.append((s, q))
    return out
