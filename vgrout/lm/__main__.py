"""``python -m vgrout.lm build|measure``: build the CPU organism, or measure its rates."""

from __future__ import annotations

import argparse
import json

from vgrout.lm.organism import ensure_organism, recipe_with


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m vgrout.lm")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the organism if the cache lacks it; print its folder")
    m = sub.add_parser("measure", help="sample and grade: compile / solve / hack rates")
    for p in (b, m):
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="a recipe variant (e.g. --set steps=240); it gets a cache folder "
            "of its own, which `--model` of vgrout.grpo.__main__ accepts",
        )
    m.add_argument("--split", choices=["train", "test"], default="train")
    m.add_argument("--mode", default="run_tests")
    m.add_argument("--samples", type=int, default=8, help="completions per problem")
    m.add_argument("--temperature", type=float, default=1.0)
    m.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        recipe = recipe_with(args.set)
    except ValueError as e:
        ap.error(str(e))
    print(ensure_organism(recipe))
    if args.cmd == "measure":
        from vgrout.lm.measure import measure_organism

        print(
            json.dumps(
                measure_organism(
                    args.split, args.mode, args.samples, args.temperature, args.seed, recipe=recipe
                ),
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
