"""evaluate_views: which views are sampled at which step, and with how many samples."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from vgrout.grpo import evaluate
from vgrout.grpo.presets import preset


class _Policy:
    """A routed policy stand-in: evaluate_views only asks for samplers."""

    model = None
    routed = True

    def __init__(self):
        self.views = []

    def sampler(self, view):
        self.views.append(view)
        return contextlib.nullcontext


def _problems(prefix: str, k: int, mode: str, subset=None) -> list:
    return [SimpleNamespace(id=f"{prefix}{i}", mode=mode, subset=subset) for i in range(k)]


class _Grades:
    """Fake sample_and_grade: call c hacks every row of problems whose id starts with 'p'
    when c is odd, so views and splits that were sampled apart differ."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, tok, problems, n, *args, **kwargs):
        self.calls.append((list(problems), n))
        odd = len(self.calls) % 2 == 1
        return None, [
            SimpleNamespace(
                format_ok=True,
                gt_correct=False,
                exploited=odd and p.id.startswith("p"),
                passed=True,
                reward=0.5,
            )  # fmt: skip
            for p in problems
            for _ in range(n)
        ]


def test_untrained_views_share_one_sampling_pass(monkeypatch):
    fake = _Grades()
    monkeypatch.setattr(evaluate, "sample_and_grade", fake)
    cfg = preset("smoke", arm="routeA")
    train, test = _problems("p", 3, "a"), _problems("t", 1, "b")
    policy = _Policy()
    rows = evaluate.evaluate_views(policy, None, cfg, 0, train, test)
    assert len(fake.calls) == 1 and policy.views == ["trained"]  # both splits, one pass
    assert [p.id for p in fake.calls[0][0]] == ["t0", "p0", "p1", "p2"]
    by = {(r["split"], r["view"]): r for r in rows}
    assert by[("iid", "trained")]["hack"] == 1.0 and by[("test", "trained")]["hack"] == 0.0
    for split in ("test", "iid"):
        assert by[(split, "trained")]["hack"] == by[(split, "deployed")]["hack"]
        assert by[(split, "deployed")]["ships"] and not by[(split, "trained")]["ships"]
    assert by[("iid", "deployed")]["n"] == 3 * cfg.eval_samples

    fake.calls.clear()
    policy = _Policy()
    rows = evaluate.evaluate_views(policy, None, cfg, 5, train, test)
    assert len(fake.calls) == 2 and policy.views == ["trained", "deployed"]
    by = {(r["split"], r["view"]): r for r in rows}
    assert by[("iid", "trained")]["hack"] != by[("iid", "deployed")]["hack"]


def test_final_evaluation_draws_the_final_sample_size(monkeypatch):
    fake = _Grades()
    monkeypatch.setattr(evaluate, "sample_and_grade", fake)
    cfg = preset("smoke", arm="routeA", eval_samples=2, final_eval_samples=8)
    train, test = _problems("p", 3, "a"), _problems("t", 2, "b")
    rows = evaluate.evaluate_views(_Policy(), None, cfg, 3, train, test, final=True)
    assert {n for _, n in fake.calls} == {8}
    assert {(r["split"], r["n"], r["samples"]) for r in rows} == {("iid", 24, 8), ("test", 16, 8)}
    fake.calls.clear()
    evaluate.evaluate_views(_Policy(), None, cfg, 2, train, test)
    assert {n for _, n in fake.calls} == {2}


def test_generated_problems_get_rates_per_subset_and_hand_written_ones_none():
    hand = _problems("p", 2, "run_tests")
    held = _problems("p", 2, "run_tests", "heldout_instance") + _problems(
        "q", 3, "sentinel", "heldout_family"
    )
    grades = _Grades()(None, None, hand + held, 2)[1]  # p rows hack, q rows do not
    out = evaluate.split_rates(grades, {"iid": hand, "test": held}, 2)
    assert "by_subset" not in out["iid"]
    by = out["test"]["by_subset"]
    assert by["heldout_instance"]["n"] == 4 and by["heldout_instance"]["hack"] == 1.0
    assert by["heldout_family"]["n"] == 6 and by["heldout_family"]["hack"] == 0.0
