"""Uses of a monitor's flags (route, penalty, screen) and the count-matched gate.

The uses are checked where they act: the reward a penalized rollout's
advantage is taken from, the loss a screened group contributes (equal to the
loss of its unflagged rows alone), the number of rollouts a count gate flags
(exact, and the same for any direction), and the view that ships. A short
run of each use on the organism checks they are wired into the loop.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from vgrout.grpo.gate import Gated
from vgrout.grpo.loss import grpo_loss
from vgrout.grpo.monitor import use_flags
from vgrout.grpo.presets import preset
from vgrout.grpo.rollouts import Group, Rollout
from vgrout.grpo.update import advantages
from vgrout.grpo.zones import zones_by_count

torch.set_num_threads(1)


def _record(rewards, zones) -> Gated:
    rollouts = [Rollout("p", "run_tests", [], [], "", "trained", reward=r) for r in rewards]
    group = Group(SimpleNamespace(id="p"), "run_tests", rollouts)
    return Gated(group, batch=None, zones=list(zones))  # type: ignore[arg-type]


def _cfg(use, **kw):
    return SimpleNamespace(monitor_use=use, penalty=kw.get("penalty", 3.0))


def test_route_leaves_the_gate_s_records_as_they_are():
    rec = _record([3.5, 0.5, 3.5], ["route", "absorb", "absorb"])
    assert use_flags([rec], _cfg("route")) == [rec]
    assert rec.flags() == [True, False, False]


def test_a_penalty_lowers_only_the_flagged_rewards_and_every_row_absorbs():
    rec = use_flags([_record([3.5, 0.5, 3.5, 3.5], ["route", "absorb", "route", "absorb"])],
                    _cfg("penalty", penalty=3.0))[0]  # fmt: skip
    assert rec.zones == ["absorb"] * 4 and rec.flags() == [True, False, True, False]
    assert rec.rewards().tolist() == [0.5, 0.5, 0.5, 3.5]
    assert rec.group.rewards().tolist() == [3.5, 0.5, 3.5, 3.5], "the graded rewards stay"
    adv = advantages(rec.rewards(), std_normalise=False, in_update=rec.in_update)
    assert adv.tolist() == pytest.approx([-0.75, -0.75, -0.75, 2.25])


def test_screened_rows_get_no_advantage_and_no_part_in_the_baseline():
    rec = use_flags([_record([3.5, 0.5, 3.5, 0.5], ["route", "absorb", "absorb", "absorb"])],
                    _cfg("screen"))[0]  # fmt: skip
    assert rec.zones == ["absorb"] * 4 and rec.in_update.tolist() == [False, True, True, True]
    adv = advantages(rec.rewards(), False, rec.in_update)
    kept = torch.tensor([0.5, 3.5, 0.5])
    assert adv[0] == 0 and adv[1:].tolist() == pytest.approx((kept - kept.mean()).tolist())
    one_left = advantages(torch.tensor([1.0, 2.0, 3.0]), False, torch.tensor([True, False, False]))
    assert one_left.tolist() == [0.0, 0.0, 0.0], "one row has no baseline to learn against"


def test_a_screened_group_s_loss_is_the_loss_of_its_kept_rows_alone():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(4, 6, generator=g, requires_grad=True)
    old = logp.detach() + 0.05 * torch.randn(4, 6, generator=g)
    mask = torch.ones(4, 6)
    rewards, keep = torch.tensor([3.5, 0.5, 3.5, 0.5]), torch.tensor([False, True, True, True])
    full, _ = grpo_loss(logp, old, advantages(rewards, False, keep), mask, 0.2, 100.0)
    alone, _ = grpo_loss(logp[keep], old[keep], advantages(rewards[keep], False), mask[keep],
                         0.2, 100.0)  # fmt: skip
    (g_full,) = torch.autograd.grad(full, logp)
    (g_alone,) = torch.autograd.grad(alone, logp)
    # the same terms summed, the screened row's all zero: equal to float32 rounding of a
    # sum of 18 terms of size ~|adv| * ratio / normaliser
    tol = 18 * torch.finfo(torch.float32).eps * 3.0 * 1.5 / 100.0
    assert abs(float(full) - float(alone)) <= tol
    assert g_full[0].abs().max() == 0 and torch.allclose(g_full[keep], g_alone[keep], atol=tol)


def test_a_count_gate_flags_exactly_k_whatever_the_scores():
    scores = [torch.tensor([0.3, 2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, 5.0])]
    zones, lowest = zones_by_count(scores, k=2, unrouted_zone="absorb")
    assert [z for zs in zones for z in zs].count("route") == 2
    assert zones[0][1] == "route" and zones[1][3] == "route" and lowest == 2.0
    ties, _ = zones_by_count([torch.ones(4), torch.ones(4)], k=2, unrouted_zone="absorb")
    assert [z for zs in ties for z in zs] == ["route"] * 2 + ["absorb"] * 6, "ties: earlier first"
    other = [torch.randn(4), torch.randn(4)]  # any other direction: the same count
    assert sum(z == "route" for zs in zones_by_count(other, 2, "absorb")[0] for z in zs) == 2
    capped, _ = zones_by_count(scores, k=20, unrouted_zone="absorb")
    assert all(z == "route" for zs in capped for z in zs), "fewer live rows than k: all"
    none, lowest = zones_by_count(scores, k=0, unrouted_zone="absorb")
    assert lowest is None and all(z == "absorb" for zs in none for z in zs)


def test_a_direction_and_its_placebo_flag_the_same_count_from_the_step_s_rollouts():
    from vgrout.grpo.router import Router

    cfg = preset("smoke", arm="routeA", gate_q=0.3, gate_count=True, placebo=True)
    feats = [torch.randn(4, 7, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    counts = []
    for seed in (0, 1):
        router = Router(cfg.replace(seed=seed), pairs=None)
        router.maybe_refresh(None, None, 1, feats[0])
        zones, _, (low, high) = router.assign(feats, [[False] * 4] * 2)
        counts.append(sum(z == "route" for zs in zones for z in zs))
        assert low is None and high is not None
    k = round(0.3 * cfg.prompts_per_step * cfg.group_size)
    assert counts == [k, k], "two directions, one count: 0.3 of the step's rollouts"


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(arm="vanilla", monitor_use="penalty"), "only a monitor flags"),
        (dict(arm="routeA", monitor_use="screen", kl_beta=0.01), "screening with a KL anchor"),
        (dict(arm="oracle", monitor_use="penalty", penalty=0.0), "penalty=0.0: expected > 0"),
        (dict(arm="routeA", monitor_use="nudge"), "monitor_use='nudge'"),
        (dict(arm="oracle", gate_count=True), "a count of flags is a score gate's"),
        (dict(arm="routeA", monitor_use="penalty", unrouted_zone="keep"), "the whole model"),
    ],
)
def test_inconsistent_monitor_settings_are_refused_by_field(fields, words):
    with pytest.raises(ValueError, match=words):
        preset("smoke", **fields)


def test_what_ships_follows_what_a_flag_does():
    assert preset("smoke", arm="routeA").ships() == "deployed"
    assert preset("smoke", arm="oracle", monitor_use="penalty").ships() == "trained"
    assert preset("smoke", arm="routeA", monitor_use="screen").ships() == "trained"
    assert preset("smoke", arm="vanilla").ships() == "trained"


@pytest.mark.slow
@pytest.mark.parametrize("use", ["penalty", "screen"])
def test_a_monitor_use_trains_flags_logs_and_ships_the_whole_model(tmp_path, use):
    from vgrout.grpo.loop import train

    cfg = preset("smoke", arm="oracle", monitor_use=use, steps=3, threads=1,
                 run_dir=str(tmp_path / use))  # fmt: skip
    res = train(cfg)
    rows = [json.loads(line) for line in open(res.run_dir / "rollouts.jsonl")]
    gated = [r for r in rows if r["zone"] is not None]
    assert gated and all(r["zone"] == "absorb" for r in gated), "no rollout is routed"
    assert all(r["flagged"] == r["exploited"] for r in gated), "the oracle flags the hacks"
    steps = res.steps
    assert all("flagged" in s for s in steps)
    ships = [e for e in res.evals if e["ships"]]
    assert ships and all(e["view"] == "trained" for e in ships)
