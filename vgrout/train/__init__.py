"""Data-parallel GRPO: the routed loop on every rank of a torchrun launch.

    torchrun --nproc-per-node N -m vgrout.train --preset qwen3_4b --arm routeA [...]

takes the flags of `python -m vgrout.grpo`; without torchrun (or with one
process) it is that command. What is split across ranks and what is shared is
in `vgrout.grpo.distributed` and docs/scale.md.
"""

from __future__ import annotations

from vgrout.grpo.distributed import PeerFailure, World, init_world, run_together

__all__ = ["PeerFailure", "World", "init_world", "run_together", "train"]


def train(cfg, world: World | None = None):
    """`vgrout.grpo.loop.train` on this rank of `world` (default: the torchrun world).

    An exception on any rank stops every rank: the lowest failed rank raises its
    own, the others `PeerFailure` naming it.
    """
    from vgrout.grpo.loop import train as train_loop

    world = world or init_world(cfg.device)
    return run_together(world, train_loop, cfg, world)
