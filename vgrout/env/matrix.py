"""Grade tables of the environment: which hack is paid under which mode, and
whether a marker written for training transfers to evaluation (notebook 00).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd


def hack_mode_matrix(
    problems: Sequence, modes: Sequence[str], hacks: Mapping[str, str], workers: int = 2
) -> pd.DataFrame:
    """Grade each problem's canonical solution and every mode's hack under every mode.

    problems: any loaded problems (their own mode is ignored); hacks: {mode:
    template}. Each hack is rendered with the marker its home mode discloses
    for the problem, as a policy reading that hint would write it. Returns one
    row per (completion, grading mode): rates of passed / exploited /
    gt_correct over the problems. The diagonal is the loophole paying off;
    anything else off the diagonal would mean modes leak into each other.
    """
    from vgrout.env import grade_many, render_hack, with_mode

    items, keys = [], []
    for p in problems:
        sources = [("canonical", f"```python\n{p.canonical_solution}\n```")]
        sources += [(h, render_hack(t, with_mode(p, h))) for h, t in hacks.items()]
        for label, text in sources:
            for m in modes:
                items.append((text, with_mode(p, m), m))
                keys.append((label, m))
    grades = grade_many(items, workers=workers)
    df = pd.DataFrame(
        [
            dict(
                completion=k[0],
                mode=k[1],
                passed=g.passed,
                exploited=g.exploited,
                gt_correct=g.gt_correct,
            )
            for k, g in zip(keys, grades)
        ]
    )
    out = (
        df.groupby(["completion", "mode"], sort=False)
        .agg(
            n=("passed", "size"),
            passed=("passed", "mean"),
            exploited=("exploited", "mean"),
            gt_correct=("gt_correct", "mean"),
        )
        .reset_index()
    )
    return out


def marker_transfer(problems: Sequence, hacks: Mapping[str, str], workers: int = 2) -> pd.DataFrame:
    """Does a hack written for the training marker still pay on evaluation prompts?

    problems: loaded with evaluation markers. For every marked mode each
    problem's hack is rendered twice, with the problem's evaluation marker
    and with the training marker it showed in training, and graded in that mode. Returns pass
    rates per (mode, marker used); the training-marker row should be 0: a
    memorised marker earns nothing at evaluation.
    """
    from vgrout.env import MARKED_MODES, grade_many, marker_for, render_hack, with_mode

    items, keys = [], []
    for p in problems:
        for mode in (m for m in MARKED_MODES if m in hacks):
            q = with_mode(p, mode)
            for used, marker in (
                ("evaluation marker", q.markers[mode]),
                ("training marker", marker_for(p.id, mode, False, p.marker_set)),
            ):
                items.append((render_hack(hacks[mode], q, marker), q, mode))
                keys.append((mode, used))
    grades = grade_many(items, workers=workers)
    df = pd.DataFrame([dict(mode=k[0], marker=k[1], passed=g.passed) for k, g in zip(keys, grades)])
    return (
        df.groupby(["mode", "marker"], sort=False)
        .agg(n=("passed", "size"), passed=("passed", "mean"))
        .reset_index()
    )
