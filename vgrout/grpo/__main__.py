"""Shell entry: `python -m vgrout.grpo --preset organism --arm routeA [--field value ...]`.

Every GRPOConfig field is a flag (`--gen-deploy-frac 0.25`, `--placebo`,
`--target-modules q_proj v_proj`); the preset supplies the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from vgrout import cli
from vgrout.grpo.config import GRPOConfig, field_docs
from vgrout.grpo.presets import PRESETS, preset


def _parser(prog: str = "python -m vgrout.grpo", doc: str = __doc__) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--preset", default="organism", choices=sorted(PRESETS),
                    help="named config the flags override (default: organism)")  # fmt: skip
    cli.add_debug_flag(ap)
    hints = typing.get_type_hints(GRPOConfig)
    docs = field_docs(GRPOConfig)
    for f in dataclasses.fields(GRPOConfig):
        flag = "--" + f.name.replace("_", "-")
        kind, doc = hints[f.name], docs.get(f.name, "")
        # '%' in a help string is an argparse format character
        doc = f"{doc} (default {f.default!r})".replace("%", "%%")
        if kind is bool:
            ap.add_argument(flag, dest=f.name, default=None, help=doc,
                            action=argparse.BooleanOptionalAction)  # fmt: skip
        elif typing.get_origin(kind) is tuple:
            inner = typing.get_args(kind)[0]
            ap.add_argument(flag, dest=f.name, default=None, nargs="+", type=inner, help=doc)
        else:
            ap.add_argument(flag, dest=f.name, default=None, type=kind, help=doc)
    return ap


def config_from_argv(argv, prog: str = "python -m vgrout.grpo", doc: str = __doc__):
    """The validated GRPOConfig the command line asks for (a preset plus flags)."""
    args = vars(_parser(prog, doc).parse_args(argv))
    args.pop("debug")
    name = args.pop("preset")
    overrides = {
        k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if v is not None
    }
    return preset(name, **overrides)


def main(argv: list[str] | None = None) -> None:
    """Train one run (or report a finished run of the same config) and print its result."""
    cfg = config_from_argv(argv)
    from vgrout.grpo.loop import train

    report(train(cfg), cfg)


def report(result, cfg: GRPOConfig) -> None:
    """The run folder and its final evaluation, on stdout (a finished run: said on stderr)."""
    if result.already_finished:
        print(f"{result.run_dir}: already finished; its result:", file=sys.stderr)
    final = [e for e in result.evals if e["step"] == cfg.steps]
    print(result.run_dir)
    print(
        json.dumps(
            [{k: e[k] for k in ("split", "view", "ships", "hack", "solve")} for e in final],
            indent=1,
        )
    )


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m vgrout.grpo"))
