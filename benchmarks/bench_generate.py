"""Rollout generation time: `model.generate`, the lean decode loop and the fused one.

One GRPO step's rollouts on the organism: --prompts training prompts x --n
rollouts each, --new-tokens new tokens, sampling at T=1, first through
`sampling.generate` with eos on, the way GRPO calls it (rows stop early;
hf's lengths differ from the loops' by chance, while lean and fused draw the
same tokens). Then the two loops generate exactly --new-tokens tokens per row
(eos disabled), so they do the same work and fused gains by its step alone,
with no row finishing. Medians of --repeats runs after one warm-up,
interleaved, in one process: compare the ratio, not the seconds.
--prompts 16 is the final evaluation's batch (128 rows).

    python benchmarks/bench_generate.py --threads 1
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from vgrout import paths
from vgrout.env.problems import load_problems
from vgrout.lm import decode, fused, sampling
from vgrout.lm.load import load_policy
from vgrout.lm.organism import OrganismRecipe
from vgrout.lm.spec import SamplingSpec
from vgrout.lm.tokens import chat_prompt


def loop_fixed(loop, model, tok, texts, n, new_tokens):
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    return loop(model, ids, n, SamplingSpec(new_tokens), eos=-1, pad=tok.pad_token_id)


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def race(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn after one warm-up each."""
    for f in fns.values():
        f()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            times[name].append(seconds(f))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_policy("organism", device="cpu")
    model.eval()
    problems = load_problems(paths.TRAIN_PROBLEMS, list(OrganismRecipe().modes))
    texts = [chat_prompt(tok, p.messages) for p in problems[: args.prompts]]
    n, k = args.n, args.new_tokens
    rows = f"{len(texts)} prompts x {n} rows, T=1"

    def rollouts(run):
        return lambda: run(model, tok, texts, n, SamplingSpec(k, batch_size=128))

    runs = {
        "hf": sampling._generate_hf,
        "lean": functools.partial(sampling._generate_lean, loop=decode.decode),
        "fused": functools.partial(sampling._generate_lean, loop=fused.decode),
    }
    g = race({name: rollouts(run) for name, run in runs.items()}, args.repeats)
    print(f"generate() with eos, {rows}, <= {k} tokens (median of {args.repeats}): "
          + "  ".join(f"{name} {t:.3f} s" for name, t in g.items()))  # fmt: skip
    f = race(
        {name: functools.partial(loop_fixed, loop, model, tok, texts, n, k)
         for name, loop in (("lean", decode.decode), ("fused", fused.decode))},
        args.repeats,
    )  # fmt: skip
    print(
        f"decode loops, eos off, {rows}, {k} tokens: lean {f['lean']:.3f} s  fused {f['fused']:.3f} s"
    )
    print(
        f"ratio fused / lean: with eos {g['fused'] / g['lean']:.2f}, eos off {f['fused'] / f['lean']:.2f}"
    )
    print(f"ratio fused / model.generate, with eos: {g['fused'] / g['hf']:.2f}")


if __name__ == "__main__":
    main()
