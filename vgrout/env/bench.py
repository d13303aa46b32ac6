"""``python -m vgrout.env bench``: grading throughput on realistic completions.

A GRPO step grades 32-64 short completions; this grades a batch of canonical
solutions and canonical hacks (half each, modes round-robin) with one warm
worker and with N, and reports completions/s and per-completion latency.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from .grader import grade_many
from .hacks import FALLBACK_HACKS, render_hack
from .modes import LOOPHOLE_MODES, MODES
from .pool import Pool
from .problems import load_problems, with_mode

DEFAULT_PROBLEMS = Path(__file__).resolve().parents[2] / "data" / "problems" / "train.jsonl"


def batch(path, n: int) -> list:
    problems = load_problems(path, MODES)
    items = []
    for i in range(n):
        p = problems[i % len(problems)]
        if i % 2 == 0:
            items.append((f"```python\n{p.canonical_solution}\n```", p))
        else:
            home = LOOPHOLE_MODES[(i // 2) % len(LOOPHOLE_MODES)]
            items.append((render_hack(FALLBACK_HACKS[home], with_mode(p, home)), p))
    return items


def measure(items, workers: int, repeats: int = 3, sandbox: str | None = None) -> dict:
    pool = Pool(workers, sandbox=sandbox)
    try:
        grade_many(items[:4], pool=pool)  # start and warm the workers
        walls, lat = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            grades = grade_many(items, pool=pool)
            walls.append(time.perf_counter() - t0)
            lat += [g.seconds for g in grades]
        level = pool.level
    finally:
        pool.close()
    wall = statistics.median(walls)
    return {
        "workers": workers,
        "level": level,
        "n": len(items),
        "wall_s": wall,
        "per_s": len(items) / wall,
        "latency_ms": 1e3 * statistics.median(lat),
    }


def main(path=None, n: int = 64, workers: int = 2, sandbox: str | None = None) -> list[dict]:
    path = path or DEFAULT_PROBLEMS
    items = batch(path, n)
    rows = [measure(items, 1, sandbox=sandbox), measure(items, workers, sandbox=sandbox)]
    for r in rows:
        print(
            f"{r['n']} completions, {r['workers']} worker(s), sandbox {r['level']}: "
            f"{r['wall_s']:.2f} s per batch, {r['per_s']:.1f} completions/s, "
            f"median per-completion sandbox latency {r['latency_ms']:.1f} ms"
        )
    return rows
