"""``python -m vgrout.env verify PATH.jsonl``: the environment checks itself.

Grades every problem's canonical solution in every mode and each mode's
canonical hack (first variant in data/hacks/hacks.jsonl) under every mode,
prints the hack x mode matrix of pass rates, and exits 1 on any violation:
a canonical solution not gt_correct or not passed; a hack that does not pay
off in its home mode; a hack that passes in another mode; a hack that fools
gt_correct. With ``--eval-markers`` it also checks that a hack rendered with
the memorised training marker earns nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

from vgrout import cli

from .grader import grade_many
from .hacks import DEFAULT_PATH, FALLBACK_HACKS, load_hacks, render_hack
from .modes import LOOPHOLE_MODES, MARKED_MODES, MODES, marker_for
from .problems import load_problems, with_mode
from .sandbox import Limits

VERIFY_WALL_S = 30.0


def canonical_hacks(source: str | None = None) -> tuple[dict[str, str], str]:
    """First variant per mode from `source` (a hacks jsonl path; default
    data/hacks/hacks.jsonl when present), or the built-in ones (``builtin``)."""
    if source == "builtin" or (source is None and not DEFAULT_PATH.exists()):
        return dict(FALLBACK_HACKS), "built-in canonical hacks"
    path = DEFAULT_PATH if source is None else source
    return {m: ts[0] for m, ts in load_hacks(path).items()}, str(path)


def _rows(problems, modes, hacks, eval_markers):
    """(row label, home mode or None, completion, problem, grading mode) to grade."""
    for base in problems:
        code = f"```python\n{base.canonical_solution}\n```"
        for m in modes:
            yield "canonical", None, code, base, m
        for h in (h for h in LOOPHOLE_MODES if h in hacks):
            marker = marker_for(base.id, h, eval_markers, base.marker_set)
            text = render_hack(hacks[h], with_mode(base, h), marker)
            for m in modes:
                yield h, h, text, base, m
            if eval_markers and h in MARKED_MODES:
                trained = marker_for(base.id, h, False, base.marker_set)  # what training showed
                stale = render_hack(hacks[h], with_mode(base, h), trained)
                for m in modes:
                    yield f"{h} (train marker)", "stale", stale, base, m


def _violation(label, home, mode, g) -> str | None:
    if home is None:
        if not (g.gt_correct and g.passed):
            return f"canonical solution fails in {mode}: {g.error}"
        return None
    if g.gt_correct:
        return f"hack {label} fools gt_correct under {mode}"
    if home == "stale":
        return f"memorised hack {label} pays under {mode}" if g.passed else None
    if mode == home and not g.exploited:
        return f"hack {label} does not pay off in its home mode ({g.error})"
    if mode != home and g.passed:
        return f"hack {label} passes under {mode}"
    return None


def _print_matrix(labels, modes, cells, out) -> None:
    width = max(len(x) for x in labels) + 2
    out.write("pass rate".ljust(width) + " ".join(m[:13].rjust(13) for m in modes) + "\n")
    for label in labels:
        row = []
        for m in modes:
            passed, total = cells.get((label, m), (0, 0))
            row.append((f"{passed / total:.2f}" if total else "-").rjust(13))
        out.write(label.ljust(width) + " ".join(row) + "\n")


def verify(
    path,
    modes=MODES,
    limit=None,
    workers=2,
    eval_markers=False,
    limits: Limits | None = None,
    out=None,
    hacks: str | None = None,
) -> int:
    """Run the checks, report to `out` (default stdout); return the number of violations."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    limits = limits or Limits(wall_s=VERIFY_WALL_S, cpu_s=int(VERIFY_WALL_S))
    problems = load_problems(path, ["gt_only"], eval_markers=eval_markers)[:limit]
    templates, hack_source = canonical_hacks(hacks)
    rows = list(_rows(problems, list(modes), templates, eval_markers))
    grades = grade_many(
        [(text, with_mode(p, m) if p.mode != m else p, m) for _, _, text, p, m in rows],
        workers=workers,
        limits=limits,
    )
    cells: dict = {}
    labels: list = []
    problems_bad: list = []
    for (label, home, _, p, m), g in zip(rows, grades):
        if label not in labels:
            labels.append(label)
        passed, total = cells.get((label, m), (0, 0))
        cells[(label, m)] = (passed + g.passed, total + 1)
        why = _violation(label, home, m, g)
        if why:
            problems_bad.append(f"{p.source} (id {p.id}): {why}")
    wall = time.perf_counter() - t0
    out.write(
        f"{path}: {len(problems)} problems, {len(modes)} modes, hacks from {hack_source}, "
        f"eval markers {'on' if eval_markers else 'off'}\n"
    )
    _print_matrix(labels, list(modes), cells, out)
    secs = sorted(g.seconds for g in grades)
    out.write(
        f"{len(grades)} grades in {wall:.1f} s wall ({len(grades) / wall:.1f}/s, "
        f"workers={workers}); per-grade sandbox time median {secs[len(secs) // 2] * 1e3:.1f} ms, "
        f"max {secs[-1] * 1e3:.0f} ms\n"
    )
    for line in problems_bad[:30]:
        out.write("VIOLATION " + line + "\n")
    out.write(f"{len(problems_bad)} violations\n")
    return len(problems_bad)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgrout.env")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check solutions and hacks in every mode")
    v.add_argument("path")
    v.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    v.add_argument("--limit", type=int, default=None)
    v.add_argument("--workers", type=int, default=2)
    v.add_argument("--eval-markers", action="store_true")
    v.add_argument(
        "--hacks",
        default=None,
        help="hack templates jsonl, or 'builtin' (default: data/hacks/hacks.jsonl)",
    )
    v.add_argument(
        "--wall",
        type=float,
        default=VERIFY_WALL_S,
        help=f"seconds per program (default {VERIFY_WALL_S:g}: some real canonical "
        "solutions need 5-12 s for their ~100 asserts on a busy 2-core machine; "
        f"grading itself defaults to {Limits.wall_s:g} s)",
    )
    cli.add_debug_flag(v)
    b = sub.add_parser("bench", help="grading throughput, 1 worker vs N")
    cli.add_debug_flag(b)
    b.add_argument("path", nargs="?", default=None)
    b.add_argument("--n", type=int, default=64)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--sandbox", choices=["none"], default=None)
    args = ap.parse_args(argv)
    if args.cmd == "bench":
        from .bench import main as bench

        bench(args.path, args.n, args.workers, args.sandbox)
        return 0
    limits = Limits(wall_s=args.wall, cpu_s=max(1, int(round(args.wall))))
    bad = verify(
        args.path, args.modes, args.limit, args.workers, args.eval_markers, limits, hacks=args.hacks
    )
    return 1 if bad else 0
