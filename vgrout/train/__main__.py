"""Shell entry: `torchrun --nproc-per-node N -m vgrout.train --preset organism --arm routeA [...]`.

Data-parallel GRPO: each step's prompts are split over the N ranks
(prompts_per_step must divide by N), the adapter gradients summed over ranks,
the gate fed every rank's rollouts; rank 0 writes the run folder. Every flag
is a GRPOConfig field, as for `python -m vgrout.grpo`; without torchrun this
is that command. Backend: NCCL on GPUs (rank r on cuda:LOCAL_RANK), gloo on
the CPU. An error on one rank stops all of them; rank 0 prints it.
"""

from __future__ import annotations

import os
import sys

from vgrout import cli

PROG = "python -m vgrout.train"


def main(argv: list[str] | None = None) -> int:
    from vgrout.grpo.__main__ import config_from_argv, report
    from vgrout.grpo.distributed import PeerFailure, init_world, run_together
    from vgrout.grpo.loop import train

    cfg = config_from_argv(argv, PROG, __doc__)
    world = init_world(cfg.device)
    if not world.main:
        os.environ["TQDM_DISABLE"] = "1"  # one progress bar, rank 0's
    try:
        result = run_together(world, train, cfg, world)
    except PeerFailure as e:  # another rank failed and reports its own error
        if world.main:
            print(f"{PROG}: stopped: {e}", file=sys.stderr)
        return e.status
    finally:
        world.close()
    if world.main:
        report(result, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
