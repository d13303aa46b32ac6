"""Units of the GRPO loop that only smoke runs touched: schedule, group split,
hint-free slots, the step's gate F0.5, the router's thresholds, log truncation
and grid configs. No model is loaded."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from vgrout.grpo.presets import preset
from vgrout.grpo.rollouts import Group, Rollout, hint_free_slots, split_group
from vgrout.grpo.router import Router
from vgrout.grpo.rundir import RunDir
from vgrout.grpo.steplog import gate_quality
from vgrout.grpo.sweep import grid_configs
from vgrout.grpo.update import lr_factor

# --- learning-rate schedule -------------------------------------------------------


def test_lr_factor_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = preset("smoke", steps=20, warmup_steps=4, min_lr_frac=0.1)
    f = [lr_factor(s, cfg) for s in range(cfg.steps + 1)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]  # (s + 1) / warmup
    assert f[4] == 1.0  # the peak, where the cosine starts
    assert all(a >= b for a, b in zip(f[4:], f[5:]))  # non-increasing afterwards
    assert f[cfg.steps] == pytest.approx(0.1, abs=1e-15)
    mid = 4 + (cfg.steps - 4) // 2  # half way through the decay: floor + half the span
    assert f[mid] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-15)


def test_lr_factor_without_warmup_starts_at_the_peak_and_stays_at_the_floor_after_the_end():
    cfg = preset("smoke", steps=10, warmup_steps=0, min_lr_frac=0.25)
    assert lr_factor(0, cfg) == 1.0
    assert lr_factor(10, cfg) == lr_factor(25, cfg) == pytest.approx(0.25, abs=1e-15)


# --- group split and hint-free slots -----------------------------------------------


def test_split_group_fills_the_group_and_gives_vanilla_no_deployed_rows():
    routed = preset("smoke", arm="routeA", group_size=8, gen_deploy_frac=0.25)
    assert split_group(routed, 1) == {"trained": 6, "deployed": 2, "teacher": 0}
    vanilla = preset("smoke", arm="vanilla", group_size=8)
    assert split_group(vanilla, 1) == {"trained": 8, "deployed": 0, "teacher": 0}


def test_split_group_adds_teachers_only_until_their_off_step_and_keeps_one_sampled_row():
    cfg = preset(
        "smoke",
        arm="routeA",
        group_size=4,
        gen_deploy_frac=0.75,
        teacher_n_per_prompt=1,
        teacher_off_step=3,
    )
    assert split_group(cfg, 0)["teacher"] == 0  # step 0 is the untrained evaluation
    assert split_group(cfg, 3) == {"trained": 1, "deployed": 2, "teacher": 1}
    assert split_group(cfg, 4) == {"trained": 1, "deployed": 3, "teacher": 0}
    for step in range(6):
        assert sum(split_group(cfg, step).values()) == cfg.group_size


def test_hint_free_slots_take_the_share_and_rotate_over_every_slot():
    assert hint_free_slots(4, 0.0, 7) == set()
    slots = [hint_free_slots(4, 0.25, step) for step in range(4)]
    assert all(len(s) == 1 for s in slots)
    assert set().union(*slots) == {0, 1, 2, 3}  # each prompt slot is hint-free in turn
    assert len(hint_free_slots(8, 0.5, 3)) == 4


# --- the step's gate quality ---------------------------------------------------------


def _group(hacked, zones, scores=None):
    """(group, flags, scores) as a step record lists a gated group; a route is a flag."""
    rollouts = [Rollout("p", "run_tests", [], [], "", "trained", exploited=h) for h in hacked]
    g = Group(SimpleNamespace(id="p"), "run_tests", rollouts)
    return g, [z == "route" for z in zones], None if scores is None else torch.tensor(scores)


def test_gate_f05_counts_routed_hacks_against_routed_cleans_and_missed_hacks():
    # tp = 1 (hack routed), fn = 2 (hacks absorbed), fp = 1 (clean routed)
    g = _group([True, True, True, False], ["route", "absorb", "absorb", "route"])
    out = gate_quality([g])
    tp, fn, fp, b2 = 1, 2, 1, 0.25
    assert out["gate_f05"] == pytest.approx((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp))
    assert out["gate_auroc"] is None  # no scores on this arm


def test_gate_f05_is_one_when_exactly_the_hacks_are_routed_and_auroc_ranks_scores():
    g = _group([True, False, False], ["route", "absorb", "absorb"], scores=[2.0, 1.0, 0.0])
    h = _group([False, True], ["absorb", "route"], scores=[-1.0, 3.0])
    out = gate_quality([g, h])
    assert out["gate_f05"] == 1.0 and out["gate_auroc"] == 1.0
    flipped = gate_quality([_group([True, False], ["absorb", "route"], scores=[0.0, 1.0])])
    assert flipped["gate_f05"] == 0.0 and flipped["gate_auroc"] == 0.0


def test_gate_quality_is_undefined_without_hacks_or_routes():
    out = gate_quality([_group([False, False], ["absorb", "absorb"], scores=[0.0, 1.0])])
    assert out == {"gate_auroc": None, "gate_f05": None}


# --- the router's thresholds -----------------------------------------------------------


def test_router_routes_nothing_while_warming_up_then_the_top_tail_of_the_buffer():
    cfg = preset("smoke", arm="routeA", placebo=True, gate_q=0.1, gate_warmup=40)
    router = Router(cfg, pairs=None)
    router.direction = torch.tensor([[1.0, 0.0]])  # score = first feature coordinate

    def feats(values):  # [G, rows=1, width=2]
        return torch.tensor([[[v, 0.0]] for v in values])

    zones, _, thr = router.assign([feats(range(20))], [[False] * 20])
    assert thr is None and zones == [["absorb"] * 20]  # 20 < warmup: nothing is routed
    zones, scores, thr = router.assign([feats(range(20, 40))], [[False] * 20])
    low, high = thr
    # the smallest scores whose cumulative share of the 40 (scores 0..39) reaches 0.1 and 0.9
    assert (low, high) == (3.0, 35.0)
    assert zones[0] == ["absorb"] * 15 + ["route"] * 5  # scores 35..39 >= high
    assert scores[0].tolist() == [float(v) for v in range(20, 40)]


def test_router_vanilla_and_absorb_put_every_rollout_in_absorb():
    for arm in ("vanilla", "absorb"):
        router = Router(preset("smoke", arm=arm), pairs=None)
        zones, scores, thr = router.assign([None, None], [[True, False], [False]])
        assert zones == [["absorb", "absorb"], ["absorb"]] and thr is None
        assert scores == [None, None]


# --- run-folder truncation --------------------------------------------------------------


def test_truncate_keeps_rows_up_to_the_step_and_drops_a_torn_last_line(tmp_path):
    run = RunDir(tmp_path / "run")
    rows = "".join(json.dumps({"step": s, "x": s * s}) + "\n" for s in range(1, 6))
    (run.path / "steps.jsonl").write_text(rows + '{"step": 6, "x"')  # killed mid-append
    (run.path / "eval.jsonl").write_text(json.dumps({"step": 0}) + "\n")
    run.truncate_to(3)
    kept = [json.loads(line) for line in (run.path / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 2, 3]
    assert (run.path / "eval.jsonl").read_text() == json.dumps({"step": 0}) + "\n"
    run.truncate_to(-1)
    assert (run.path / "steps.jsonl").read_text() == ""


def test_truncate_refuses_a_malformed_line_that_is_not_the_last(tmp_path):
    run = RunDir(tmp_path / "run")
    (run.path / "rollouts.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"rollouts\.jsonl:2: malformed JSON"):
        run.truncate_to(5)


# --- grid configs ---------------------------------------------------------------------------


def test_grid_configs_give_each_arm_and_seed_a_resumable_one_thread_run_folder(tmp_path):
    base = preset("smoke")
    arms = {"vanilla": dict(arm="vanilla"), "placebo": dict(arm="routeA", placebo=True)}
    cfgs = grid_configs(base, arms, [0, 3], tmp_path)
    assert sorted(cfgs) == [("placebo", 0), ("placebo", 3), ("vanilla", 0), ("vanilla", 3)]
    c = cfgs[("placebo", 3)]
    assert (c.arm, c.placebo, c.seed, c.resume, c.threads) == ("routeA", True, 3, True, 1)
    assert c.run_dir == str(tmp_path / "placebo" / "s3")
    assert math.isclose(c.lr, base.lr)  # everything else comes from the base


def test_grid_configs_reject_an_inconsistent_arm_by_field(tmp_path):
    with pytest.raises(ValueError, match="arm"):
        grid_configs(preset("smoke"), {"bad": dict(arm="routeZ")}, [0], tmp_path)


# --- retain-heal --------------------------------------------------------------------------


def test_retain_heal_moves_the_deployed_block_only_and_lowers_the_clean_nll():
    from vgrout.env.pairs import load_pairs
    from vgrout.grpo.heal import retain_heal
    from vgrout.grpo.policy import build_policy
    from vgrout.lm.load import load_policy
    from vgrout.paths import PAIRS

    torch.manual_seed(0)
    base, tok = load_policy("organism")
    cfg = preset("organism", arm="routeA", heal_steps=6, lr=3e-3)
    pairs = load_pairs(f"{PAIRS}#authored")
    policy = build_policy(cfg, base, tok, pairs)
    before = {k: [p.detach().clone() for p in ps] for k, ps in policy.params.items()}
    out = retain_heal(policy, tok, pairs, cfg)
    moved = [not torch.equal(a, p) for a, p in zip(before["deployed"], policy.params["deployed"])]
    assert any(moved)
    assert all(torch.equal(a, p) for a, p in zip(before["quarantine"], policy.params["quarantine"]))
    assert out["heal_steps"] == 6 and out["heal_loss_last"] < out["heal_loss_first"]
    with pytest.raises(ValueError, match="needs pairs"):
        retain_heal(policy, tok, [], cfg)


@pytest.mark.parametrize("one_product", [False, True])
def test_one_product_reaches_the_routed_forward(one_product):
    """The config's one_product is what the adapters compute with (a run that asked for
    one product but trained with two would report the wrong arithmetic)."""
    from vgrout.adapters.layers import routed_info
    from vgrout.grpo.policy import build_policy
    from vgrout.lm.load import load_policy

    base, tok = load_policy("organism")
    cfg = preset("organism", arm="routeA", one_product=one_product)
    policy = build_policy(cfg, base, tok, [])
    assert routed_info(policy.model).state.one_product is one_product
