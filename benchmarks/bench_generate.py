"""Rollout generation time: `model.generate` against the lean decode loop.

One GRPO step's rollouts on the organism: --prompts training prompts x --n
rollouts each, --new-tokens new tokens, sampling at T=1. Both sides generate
exactly --new-tokens tokens per row (eos disabled), so they do the same work
whatever they sample. Then the same through `sampling.generate` with eos on,
the way GRPO calls it (rows stop early, so the two sides' lengths differ by
chance). Medians of --repeats runs after one warm-up, interleaved, in one
process: compare the ratio, not the seconds (the machine is shared).

    python benchmarks/bench_generate.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vgrout import paths
from vgrout.env.problems import load_problems
from vgrout.lm import decode, sampling
from vgrout.lm.load import load_policy
from vgrout.lm.organism import OrganismRecipe
from vgrout.lm.tokens import chat_prompt


def hf_fixed(model, tok, texts, n, new_tokens):
    flat = [t for t in texts for _ in range(n)]
    enc = tok(flat, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        return model.generate(
            **enc,
            do_sample=True,
            temperature=1.0,
            top_k=None,
            top_p=1.0,
            max_new_tokens=new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=None,
        )


def lean_fixed(model, tok, texts, n, new_tokens):
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    return decode.decode(model, ids, n, new_tokens, eos=-1, pad=tok.pad_token_id)


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def race(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of a and of b, run alternately after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(seconds(a))
        tb.append(seconds(b))
    return statistics.median(ta), statistics.median(tb)


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
        return lambda: run(model, tok, texts, n, k, 1.0, 0, 1.0, 64)

    g_hf, g_lean = race(
        rollouts(sampling._generate_hf), rollouts(sampling._generate_lean), args.repeats
    )
    print(f"generate() with eos, {rows}, <= {k} tokens: hf {g_hf:.3f} s  lean {g_lean:.3f} s")
    t_hf, t_lean = race(
        lambda: hf_fixed(model, tok, texts, n, k),
        lambda: lean_fixed(model, tok, texts, n, k),
        args.repeats,
    )
    print(f"model.generate, {rows}, {k} tokens: {t_hf:.3f} s (median of {args.repeats})")
    print(f"decode loop,    {rows}, {k} tokens: {t_lean:.3f} s (median of {args.repeats})")
    print(f"ratio model.generate / decode loop: {t_hf / t_lean:.2f}")


if __name__ == "__main__":
    main()
