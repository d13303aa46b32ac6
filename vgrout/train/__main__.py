"""Shell entry: `torchrun --nproc-per-node N -m vgrout.train --preset organism --arm routeA [...]`.

Data-parallel GRPO: each step's prompts are split over the N ranks
(prompts_per_step must divide by N), the adapter gradients summed over ranks,
the gate fed every rank's rollouts; rank 0 writes the run folder. Every flag
is a GRPOConfig field, as for `python -m vgrout.grpo`; without torchrun this
is that command. Backend: NCCL on GPUs (rank r on cuda:LOCAL_RANK), gloo on
the CPU. An error on one rank stops all of them: that rank prints it, rank 0
names it.
"""

from __future__ import annotations

import os
import sys
import traceback

from vgrout import cli

PROG = "python -m vgrout.train"


def main(argv: list[str] | None = None) -> int:
    if int(os.environ.get("RANK", "0")) > 0:  # one progress bar, rank 0's (read at import)
        os.environ["TQDM_DISABLE"] = "1"
    from vgrout.grpo.__main__ import config_from_argv, report
    from vgrout.grpo.distributed import PeerFailure, init_world, run_together
    from vgrout.grpo.loop import train

    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_argv(argv, PROG, __doc__)
    world = init_world(cfg.device)
    if world.size == 1:  # python -m vgrout.grpo, exactly
        report(train(cfg), cfg)
        return 0
    try:
        result = run_together(world, train, cfg, world, report=_reporter("--debug" in argv))
    except PeerFailure as e:
        return e.status
    except cli.INPUT_ERRORS:
        return 2
    except Exception:  # noqa: BLE001 - reported on this rank above, with its traceback
        return 1
    finally:
        world.close()
    if world.main:
        report(result, cfg)
    return 0


def _reporter(debug: bool):
    """What a rank prints about a failure: cli.run's one line for an input error (the
    traceback with --debug or for any other error); another rank's failure in one line."""
    from vgrout.grpo.distributed import PeerFailure

    def report(e: BaseException) -> None:
        if isinstance(e, PeerFailure):
            print(f"{PROG}: stopped: {e}", file=sys.stderr)
        elif isinstance(e, cli.INPUT_ERRORS) and not debug:
            print(f"{PROG}: error: {cli.one_line(e)}", file=sys.stderr)
        else:
            traceback.print_exception(e)
        sys.stderr.flush()

    return report


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
