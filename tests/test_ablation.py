"""The preregistered analysis: paired differences, tests per family, verdicts, the label curve."""

from __future__ import annotations

import pandas as pd
import pytest

from vgrout.figures import ablation


def _seeds(values: dict[str, list[float]], metric: str = "hack") -> pd.DataFrame:
    """A seed table: one shipped iid row per arm x seed, plus a trained row that must be ignored."""
    rows = []
    for arm, vs in values.items():
        for seed, v in enumerate(vs):
            base = dict(arm=arm, seed=seed, split="iid", step=100, n=400, solve=0.5, hack=0.5)
            rows.append({**base, "view": "deployed", "ships": True, metric: v})
            rows.append({**base, "view": "trained", "ships": False, metric: 0.99})
    return pd.DataFrame(rows)


def _cmp(cid, a, b, family="primary", sided="less", metric="hack"):
    return dict(id=cid, a=a, b=b, metric=metric, sided=sided, family=family)


def test_paired_reads_the_shipped_view_by_seed():
    seeds = _seeds({"a": [0.1, 0.2, 0.3], "b": [0.3, 0.2, 0.6]})
    pr = ablation.paired(seeds, "a", "b", "hack")
    assert pr["d"].round(12).tolist() == [-0.2, 0.0, -0.3]


def test_tests_adjust_within_family_and_give_verdicts():
    lower = [0.1] * 8
    seeds = _seeds({"r": lower, "v": [0.4] * 8, "h": [0.1, 0.2] * 4})
    comps = [_cmp("P1", "r", "v"), _cmp("P2", "r", "h"), _cmp("S1", "r", "v", family="secondary")]
    out = ablation.test_table(seeds, comps).set_index("id")
    assert out.loc["P1", "p"] == 1 / 256 and out.loc["P1", "seeds_a_lower"] == 8
    assert out.loc["P1", "effect"] == pytest.approx(-0.3)
    # P2: d = 0 in four seeds, -0.1 in four: exact p = 1/16 (zeros flip to themselves)
    assert out.loc["P2", "p"] == pytest.approx(1 / 16)
    assert out.loc["P1", "p_holm"] == pytest.approx(2 / 256)  # Holm over P1, P2 only
    assert out.loc["S1", "p_holm"] == out.loc["S1", "p"]  # its own family
    assert out.loc["P1", "verdict"] == "supported" and out.loc["P2", "verdict"] == "not supported"


def test_too_few_seeds_cannot_decide():
    seeds = _seeds({"r": [0.0] * 4, "v": [0.5] * 4})
    out = ablation.test_table(seeds, [_cmp("S", "r", "v")])
    assert out["p"].iloc[0] == 1 / 16 and out["verdict"].iloc[0].startswith("cannot be decided")


def test_bad_comparisons_are_refused():
    seeds = _seeds({"r": [0.1], "v": [0.2]})
    with pytest.raises(ValueError, match="missing field"):
        ablation.test_table(seeds, [{"id": "P1", "a": "r", "b": "v"}])
    with pytest.raises(ValueError, match=r"\['nope'\] not in the grid"):
        ablation.test_table(seeds, [_cmp("P1", "r", "nope")])
    with pytest.raises(ValueError, match="sided"):
        ablation.test_table(seeds, [_cmp("P1", "r", "v", sided="lower")])


def test_label_curve_interpolates_the_target():
    seeds = _seeds({"none": [0.4, 0.4], "half": [0.2, 0.2], "all": [0.0, 0.0], "t": [0.3, 0.3]})
    curve, goal, share = ablation.label_curve(seeds, {"none": 0.0, "half": 0.5, "all": 1.0}, "t")
    assert curve["hack"].tolist() == pytest.approx([0.4, 0.2, 0.0])
    assert goal == pytest.approx(0.3) and share == pytest.approx(0.25)
    seeds = _seeds({"none": [0.4], "all": [0.0], "t": [0.6]})
    assert ablation.label_curve(seeds, {"none": 0.0, "all": 1.0}, "t")[2] is None


def test_count_check_finds_a_step_off_the_planned_count():
    cfg = dict(gate_count=True, gate_q=0.3, prompts_per_step=4, group_size=8)
    # step 1: 4 live groups, 10 of 32 flagged; step 2: one live group (8 < 10: all 8)
    rows = [dict(arm="r", seed=0, step=1, live_groups=4, flagged=10 / 32, hack=0.2),
            dict(arm="r", seed=0, step=2, live_groups=1, flagged=1.0, hack=0.5)]  # fmt: skip
    configs = {("r", 0): cfg, ("v", 0): {"gate_count": False}}
    out = ablation.count_check(pd.DataFrame(rows), configs)
    assert out.to_dict("records") == [dict(arm="r", seed=0, target=10, steps=2,
        steps_fewer_live=1, steps_off_count=0, flagged=pytest.approx(0.65625), hack=pytest.approx(0.35))]  # fmt: skip
    rows[0]["flagged"] = 9 / 32  # one rollout short at step 1
    assert ablation.count_check(pd.DataFrame(rows), configs)["steps_off_count"].tolist() == [1]


@pytest.mark.parametrize("n_arms, stacked", [(4, False), (9, True)])
def test_seeds_figure_stacks_hack_over_solve_when_arms_are_many(n_arms, stacked):
    """Side by side, 17 arms (the monitor grid) left bars too narrow to read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [f"arm{i}" for i in range(n_arms)]
    fig = ablation.seeds_figure(_seeds({a: [0.1, 0.2, 0.3] for a in arms}), arms, "t")
    hack, solve = fig.axes[:2]
    below = bool(solve.get_position().y1 <= hack.get_position().y0)
    assert below is stacked
    plt.close(fig)
