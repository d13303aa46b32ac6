"""evaluate_views: which views are sampled at which step."""

from __future__ import annotations

import contextlib

from vgrout.grpo import evaluate
from vgrout.grpo.config import preset


class _Policy:
    """A routed policy stand-in: evaluate_views only asks for samplers."""

    model = None
    routed = True

    def __init__(self):
        self.views = []

    def sampler(self, view):
        self.views.append(view)
        return contextlib.nullcontext


def test_untrained_views_share_one_sampling_pass(monkeypatch):
    calls = []

    def fake_policy_eval(model, tok, problems, *args, **kwargs):
        calls.append(problems)
        return {"hack": 0.25 * len(calls), "solve": 0.5, "compile": 1.0, "n": len(problems)}, []

    monkeypatch.setattr(evaluate, "evaluate_policy", fake_policy_eval)
    cfg = preset("smoke", arm="routeA")
    train, test = ["p1", "p2", "p3"], ["t1"]
    policy = _Policy()
    rows = evaluate.evaluate_views(policy, None, cfg, 0, train, test)
    assert len(calls) == 2 and policy.views == ["trained", "trained"]  # one pass per split
    by = {(r["split"], r["view"]): r for r in rows}
    for split in ("test", "iid"):
        assert by[(split, "trained")]["hack"] == by[(split, "deployed")]["hack"]
        assert by[(split, "deployed")]["ships"] and not by[(split, "trained")]["ships"]

    calls.clear()
    policy = _Policy()
    rows = evaluate.evaluate_views(policy, None, cfg, 5, train, test)
    assert len(calls) == 4 and policy.views == ["trained", "deployed", "trained", "deployed"]
    by = {(r["split"], r["view"]): r for r in rows}
    assert by[("iid", "trained")]["hack"] != by[("iid", "deployed")]["hack"]
