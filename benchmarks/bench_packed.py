"""Packed passes with completion attention in one call against length buckets.

One GRPO step's rollouts on the organism (--prompts training prompts x --n
rollouts, sampled with the fused decoder at T=1), packed as routeA packs them
(two zones per group, so two prompt units), run through the routed policy as
the update runs them (forward and backward under per-token route masks) and as
the gate runs them (deployed-view forward with the bottleneck capture, no lm
head), with `packed.BUCKETS` = 1 and = 4. Medians of --repeats after one
warm-up, interleaved, in one process: compare the ratio, not the seconds.

    python benchmarks/bench_packed.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vgrout import paths
from vgrout.adapters import ablate_quarantine, attach_routed_adapters, route
from vgrout.directions.capture import capture_in_forward
from vgrout.env.problems import load_problems
from vgrout.lm import packed
from vgrout.lm.load import load_policy
from vgrout.lm.sampling import generate
from vgrout.lm.spec import SamplingSpec
from vgrout.lm.tokens import chat_prompt


def update_pass(model, pk, m, d) -> None:
    with route(model, pk.token_masks(m), pk.token_masks(d)):
        packed.forward(model, pk).sum().backward()


def gate_pass(model, pk) -> None:
    pool = lambda acts: packed.pool_rows(acts, pk)  # noqa: E731
    with torch.no_grad(), ablate_quarantine(model):
        with capture_in_forward(model, None, pool=pool):
            packed.forward(model, pk, logits=False)


def routed_step(prompts: int, n: int, seed: int):
    """One step's rollouts of the organism packed as routeA packs them: (routed model,
    tokenizer, samples, packed stream, m, d), half of each group in each zone."""
    torch.manual_seed(seed)
    base, tok = load_policy("organism")
    problems = load_problems(paths.repo_path("data/problems/train.jsonl"), ["run_tests"])
    texts = [chat_prompt(tok, p.messages) for p in problems[:prompts]]
    s = generate(base, tok, texts, n, SamplingSpec(100, decoder="fused"))
    model = attach_routed_adapters(base, r=8, init="gaussian", seed=0)
    zones = ["absorb" if i % n < n // 2 else "route" for i in range(len(s.completion_ids))]
    pk = packed.pack(s.prompt_ids, s.completion_ids, keys=zones)
    m = torch.ones(len(zones))
    d = torch.tensor([float(z == "route") for z in zones])
    return model, tok, s, pk, m, d


def timed(fn, buckets: int) -> float:
    packed.BUCKETS = buckets
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed: other completion lengths")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _, s, pk, m, d = routed_step(args.prompts, args.n, args.seed)
    lengths = [len(c) for c in s.completion_ids]
    prompt = statistics.mean(len(p) for p in s.prompt_ids)
    print(f"{len(lengths)} rows, prompts mean {prompt:.1f}, completions mean "
          f"{statistics.mean(lengths):.1f}, longest {max(lengths)}; "
          f"{len(pk.ids)} stream tokens")  # fmt: skip
    for name, fn in (("update", lambda: update_pass(model, pk, m, d)),
                     ("gate", lambda: gate_pass(model, pk))):  # fmt: skip
        times = {1: [], 4: []}
        for b in times:
            pk.__dict__.pop("buckets", None)
            timed(fn, b)
        for _ in range(args.repeats):
            for b in times:
                pk.__dict__.pop("buckets", None)  # the split is made per stream, once
                times[b].append(timed(fn, b))
        one, four = (statistics.median(times[b]) for b in (1, 4))
        print(f"{name}: one call {one:.4f} s  4 buckets {four:.4f} s  ratio {four / one:.3f}")


if __name__ == "__main__":
    main()
