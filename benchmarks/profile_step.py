"""Where a GRPO step's time goes on the organism: the measurements behind docs/grpo.md "Speed".

Each part prints its own lines; run one part or all (one thread, one process):

    ops       aten ops a decode step dispatches, lean loop against fused loop
    decode    torch profiler: matmul share of the fused loop on 4 prompts x 8 rows
    passes    torch profiler: matmul and SDPA shares of routeA's packed update and gate
    eval      one view of the final evaluation on the untrained organism: sampling, grading
    overlap   sampling a step's rollouts while the grader works on 32 completions, against
              one after the other (wall seconds, medians)
    compile   torch.compile(fused.step, dynamic=True): first call and later calls (minutes)

    python benchmarks/profile_step.py ops decode passes eval overlap
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from bench_packed import gate_pass, routed_step, update_pass
from torch.profiler import ProfilerActivity, profile

from vgrout import paths
from vgrout.env import grade_many, load_problems
from vgrout.grpo.config import GRPOConfig
from vgrout.lm import decode, fused
from vgrout.lm.load import load_policy
from vgrout.lm.sampling import sample
from vgrout.lm.spec import SamplingSpec
from vgrout.lm.tokens import chat_prompt

MATMULS = ("aten::mm", "aten::bmm", "aten::addmm")
ATTENTION = "aten::_scaled_dot_product_flash_attention_for_cpu"


def organism_prompts(tok, count: int = 4) -> list[list[int]]:
    problems = load_problems(paths.repo_path("data/problems/train.jsonl"), ["run_tests"])
    return [
        tok(chat_prompt(tok, p.messages), add_special_tokens=False)["input_ids"]
        for p in problems[:count]
    ]


def shares(prof, names: dict[str, tuple[str, ...]]) -> str:
    """Self CPU time of each named op family as a share of the profile's total."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    parts = []
    for label, prefixes in names.items():
        t = sum(e.self_cpu_time_total for e in events if e.key.startswith(prefixes))
        parts.append(f"{label} {100 * t / total:.0f}%")
    return f"total {total / 1e3:.0f} ms: " + ", ".join(parts)


def part_ops(model, tok) -> None:
    ids = organism_prompts(tok, 1)
    for name, loop in (("lean", decode.decode), ("fused", fused.decode)):
        counts = []
        for steps in (11, 21):  # the difference is 10 decode steps, prompt pass excluded
            with profile(activities=[ProfilerActivity.CPU]) as p:
                loop(model, ids, 2, SamplingSpec(steps), -1, tok.pad_token_id)
            counts.append(
                sum(1 for e in p.events() if e.name.startswith("aten::") and e.cpu_parent is None)
            )
        print(
            f"ops: {name} loop, top-level aten ops a decode step: {(counts[1] - counts[0]) / 10:.0f}"
        )


def part_decode(model, tok) -> None:
    ids = organism_prompts(tok)
    fused.decode(model, ids, 8, SamplingSpec(100), tok.eos_token_id, tok.pad_token_id)
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for seed in range(3):
            torch.manual_seed(seed)
            fused.decode(model, ids, 8, SamplingSpec(100), tok.eos_token_id, tok.pad_token_id)
    print(
        "decode: fused loop, 3 x (4 prompts x 8 rows, <= 100 tokens),",
        shares(p, {"matmuls": MATMULS}),
    )


def part_passes() -> None:
    model, _, _, pk, m, d = routed_step(4, 8, 0)
    for name, fn in (("update", lambda: update_pass(model, pk, m, d)),
                     ("gate", lambda: gate_pass(model, pk))):  # fmt: skip
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as p:
            fn()
        fam = {"matmuls": MATMULS, "attention": (ATTENTION,)}
        print(f"passes: routeA {name} pass, {len(pk.ids)} tokens,", shares(p, fam))


def part_eval(model, tok) -> None:
    cfg = GRPOConfig()
    test = load_problems(paths.repo_path(cfg.test_problems), list(cfg.modes), eval_markers=True)
    train = load_problems(paths.repo_path(cfg.train_problems), list(cfg.modes))
    problems = test + train
    t = time.perf_counter()
    spec = SamplingSpec(100, decoder="fused", batch_size=cfg.eval_batch_size)
    outs = sample(model, tok, [p.messages for p in problems], 8, spec, seed=0)
    t1 = time.perf_counter()
    grade_many([(c, p) for p, cs in zip(problems, outs) for c in cs], workers=cfg.workers)
    t2 = time.perf_counter()
    print(f"eval: one view, {len(problems)} problems x 8: sampling {t1 - t:.2f} s, "
          f"grading {t2 - t1:.2f} s")  # fmt: skip


def part_overlap(model, tok, repeats: int = 7) -> None:
    cfg = GRPOConfig()
    problems = load_problems(paths.repo_path(cfg.train_problems), list(cfg.modes))[:4]
    ids = organism_prompts(tok)

    def rollouts():
        d = fused.decode(model, ids, 8, SamplingSpec(100), tok.eos_token_id, tok.pad_token_id)
        rows = [r[: r.index(tok.eos_token_id) + 1] if tok.eos_token_id in r else r
                for r in d.tokens.tolist()]  # fmt: skip
        texts = tok.batch_decode(rows, skip_special_tokens=True)
        return [(c, problems[i // 8]) for i, c in enumerate(texts)]

    items = rollouts()
    grade_many(items, workers=cfg.workers)  # warm the pool
    apart, together = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        new = rollouts()
        grade_many(items, workers=cfg.workers)
        apart.append(time.perf_counter() - t)
        t = time.perf_counter()
        th = threading.Thread(target=grade_many, args=(items,), kwargs={"workers": cfg.workers})
        th.start()
        new = rollouts()
        th.join()
        together.append(time.perf_counter() - t)
        items = new
    print(f"overlap: sample + grade 32 one after the other {statistics.median(apart):.3f} s, "
          f"overlapped {statistics.median(together):.3f} s")  # fmt: skip


def part_compile(model, tok) -> None:
    ids = organism_prompts(tok)

    def run():
        return fused.decode(model, ids, 8, SamplingSpec(100), tok.eos_token_id, tok.pad_token_id)

    run()
    eager = statistics.median(timed(run) for _ in range(5))
    step = fused.step
    fused.step = torch.compile(step, dynamic=True)
    try:
        first = timed(run)
        later = statistics.median(timed(run) for _ in range(5))
    finally:
        fused.step = step
    print(f"compile: first call {first:.1f} s, later {later:.3f} s, eager {eager:.3f} s")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parts = ("ops", "decode", "passes", "eval", "overlap", "compile")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("parts", nargs="+", choices=parts)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok = load_policy("organism")
    for part in args.parts:
        torch.manual_seed(0)
        if part == "passes":
            part_passes()
        else:
            globals()[f"part_{part}"](model, tok)


if __name__ == "__main__":
    main()
