"""``python -m vgrout.lm build|measure``: rebuild the CPU organism, or measure its rates.

build                        build the current recipe into the cache, print its folder
build --output data/organism ... and replace the shipped organism with it
build --recipe organism_v2 --output data/organism_v2   the same for another named recipe
measure                      the shipped organism's compile / solve / hack rates
measure --set steps=240      a recipe variant's (built into the cache if missing)
measure --recipe organism_v2 --problems data/families/heldout.jsonl --mode run_tests sentinel
"""

from __future__ import annotations

import argparse
import json
import sys

from vgrout import cli
from vgrout.env.modes import MARKER_SETS
from vgrout.lm.measure import measure_organism
from vgrout.lm.organism import RECIPES, ensure_organism, recipe_with
from vgrout.lm.spec import COMMITTED_SAMPLING


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m vgrout.lm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the organism from its recipe (cached by recipe hash)")
    b.add_argument("--output", default=None, metavar="DIR",
                   help="also ship the build to DIR with its record (data/organism replaces "
                   "the shipped organism)")  # fmt: skip
    m = sub.add_parser("measure", help="sample and grade: compile / solve / hack rates")
    for p in (b, m):
        p.add_argument("--recipe", default="organism", choices=sorted(RECIPES),
                       help="the named recipe (organism.RECIPES; default organism, v1)")  # fmt: skip
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="a recipe variant (e.g. --set steps=240); it gets a cache folder "
                       "of its own, which --model of python -m vgrout.grpo accepts")  # fmt: skip
        cli.add_debug_flag(p)
    m.add_argument("--split", choices=["train", "test"], default="train",
                   help="data/problems/{train,test}.jsonl (the v1 problems)")  # fmt: skip
    m.add_argument("--problems", default=None, metavar="PATH",
                   help="a problem file to measure on instead of --split")  # fmt: skip
    m.add_argument("--mode", nargs="+", default=["run_tests"],
                   help="modes, round-robin over the problems (default run_tests)")  # fmt: skip
    m.add_argument("--eval-markers", action="store_true",
                   help="hint evaluation markers (held-out transfer) instead of training ones")  # fmt: skip
    m.add_argument("--marker-set", default=None, choices=MARKER_SETS,
                   help="render the problems with this marker set instead of each row's own")  # fmt: skip
    m.add_argument("--samples", type=int, default=8, help="completions per problem")
    m.add_argument("--temperature", type=float, default=1.0)
    m.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    recipe = recipe_with(args.set, args.recipe)
    if args.cmd == "build":
        folder = ensure_organism(recipe)
        print(folder)
        if args.output:
            from vgrout.lm.shipped import ship

            record = ship(folder, args.output)
            print(f"shipped to {args.output}: key {record['key']}, "
                  f"weights sha256 {record['weights_sha256']}")  # fmt: skip
        return
    from vgrout import paths

    variant = recipe if args.set else None  # no --set: the shipped organism
    spec = COMMITTED_SAMPLING.replace(temperature=args.temperature)
    split = paths.TRAIN_PROBLEMS if args.split == "train" else paths.TEST_PROBLEMS
    problems = paths.repo_path(args.problems) if args.problems else split
    rates = measure_organism(problems, args.mode, args.samples, spec, args.seed, args.recipe,
                             variant, eval_markers=args.eval_markers, marker_set=args.marker_set)  # fmt: skip
    print(json.dumps(rates, indent=1))


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m vgrout.lm"))
