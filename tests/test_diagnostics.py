"""Diagnostics: pools, the problem-wise split, the routing table, self-generated pairs."""

import json
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vgrout.directions import diagnostics
from vgrout.directions import table as table_module
from vgrout.directions.diagnostics import (
    LabelledPool,
    labelled_pool_from_jsonl,
    reference_pool,
    routing_table,
    split_by_group,
)
from vgrout.directions.table import PairSource

torch.set_num_threads(1)


def _reference() -> Path | None:
    env = os.environ.get("VGROUT_REFERENCE")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference"
    return path if path.is_dir() else None


def _planted_pool(n_problems=16, per=4, seed=0):
    """Hacks carry MARK tokens ('#') where cleans carry BLANK ('_'): a linear signal."""
    g = np.random.default_rng(seed)
    prompts, comps, labels, groups = [], [], [], []
    for p in range(n_problems):
        for k in range(per):
            body = list("".join(g.choice(list("abcdefgh +=()"), 16)))
            y = int(k % 2 == 0)
            for j in g.choice(16, 3, replace=False):
                body[j] = "#" if y else "_"
            prompts.append(f"problem {p}")
            comps.append("".join(body))
            labels.append(y)
            groups.append(str(p))
    return LabelledPool(prompts, comps, np.array(labels), groups, name="planted")


def test_split_keeps_problems_whole_and_both_classes_on_each_side():
    pool = _planted_pool()
    train = split_by_group(pool.groups, pool.labels, 0.5, seed=0)
    for g in set(pool.groups):
        rows = [train[i] for i, x in enumerate(pool.groups) if x == g]
        assert len(set(rows)) == 1, f"problem {g} split across train and test"
    for side in (train, ~train):
        assert set(pool.labels[side].tolist()) == {0, 1}
    assert np.array_equal(train, split_by_group(pool.groups, pool.labels, 0.5, seed=0))


def test_split_refuses_when_a_side_lacks_a_class():
    with pytest.raises(ValueError, match="lacks a class"):
        split_by_group(["a", "a", "b", "b"], np.array([1, 1, 0, 0]), 0.5, seed=0)


def test_routing_table_columns_and_signal_ordering(planted_char_lm):
    model, tok, _ = planted_char_lm
    pool = _planted_pool()
    pairs = [SimpleNamespace(prompt=f"q{i}", hack="ab#cd#ef", clean="ab_cd_ef") for i in range(4)]
    placebo = [SimpleNamespace(prompt=f"q{i}", hack="abcdef", clean="fedcba") for i in range(4)]
    sites = ["bottleneck", "grad"]
    noisy = [
        SimpleNamespace(prompt=f"q{i}", hack=f"ab#c{'xyz'[i % 3]}d#ef", clean=f"ab_cd_e{i}f")
        for i in range(6)
    ]
    table = routing_table(
        model,
        tok,
        pool,
        {
            "authored": PairSource(tuple(pairs)),
            "placebo": PairSource(tuple(placebo)),
            "authored_t": PairSource(tuple(noisy), "t"),
            "oracle": "oracle",
            "haar": "haar",
        },
        sites=sites,
        n_boot=100,
        n_band=50,
        seed=0,
    )
    expected_cols = {
        "site",
        "source",
        "auroc",
        "auroc_lo",
        "auroc_hi",
        "f05",
        "f05_lo",
        "f05_hi",
        "band_median",
        "band_p95",
        "f05_ceiling",
        "f05_verdict",
        "auroc_verdict",
        "hack_share",
        "n_hack",
        "n_clean",
        "n_problems",
    }
    assert expected_cols <= set(table.columns)
    assert len(table) == len(sites) * 5
    assert (table.n_hack + table.n_clean + table.n_train == len(pool)).all()
    row = table.set_index(["site", "source"])
    assert row.loc[("bottleneck", "oracle"), "auroc"] > 0.95
    assert row.loc[("bottleneck", "authored"), "auroc"] > 0.95
    assert row.loc[("bottleneck", "authored_t"), "auroc"] > 0.9
    oracle = row.loc[("bottleneck", "oracle")]
    assert oracle.f05 > oracle.band_median and oracle.auroc > oracle.band_auroc_median
    # AUROCs lie in [0, 1]; np.quantile interpolates between two of them with three
    # float64 roundings (a difference, a product, a sum): within 1.5 eps of 1
    slack = 2 * np.finfo(np.float64).eps
    assert (table.auroc_lo <= table.auroc + slack).all() and (
        table.auroc <= table.auroc_hi + slack
    ).all()


def test_routing_table_reports_the_ceiling_and_cannot_discriminate_at_it(planted_char_lm):
    """Balanced pool, q = 0.1: the band's p95 reaches the F0.5 ceiling at the bottleneck,
    so no verdict there can be 'does not beat'; at a 10% hack share the oracle beats it."""
    from vgrout.directions.metrics import BEATS, CANNOT_DISCRIMINATE, f_beta_ceiling

    model, tok, _ = planted_char_lm
    pool = _planted_pool()
    kw = dict(sites=["bottleneck"], n_boot=50, n_band=50, seed=0)
    own = routing_table(model, tok, pool, {"oracle": "oracle", "haar": "haar"}, **kw)
    y_test = pool.labels[~split_by_group(pool.groups, pool.labels, 0.5, seed=0)]
    assert (own.f05_ceiling == f_beta_ceiling(y_test, q=0.1)).all()
    assert (own.f05 <= own.f05_ceiling * (1 + 8 * np.finfo(np.float64).eps)).all()
    assert (own.f05_verdict == CANNOT_DISCRIMINATE).all(), own[["source", "f05", "band_p95"]]
    assert (own.hack_share == y_test.mean()).all()
    low = routing_table(model, tok, pool, {"oracle": "oracle"}, hack_share=0.1, **kw)
    assert low.f05_ceiling.iloc[0] == 1.0 and low.hack_share.iloc[0] == 0.1
    assert low.f05_verdict.iloc[0] == BEATS, low.iloc[0]


def test_routing_table_bootstraps_the_held_out_problems(char_lm, monkeypatch):
    """Every CI resamples problems: the bootstrap gets each held-out row's problem id."""
    model, tok = char_lm
    pool = _planted_pool()
    seen = []

    def spy(fn, scores, labels, *, groups, n, seed):
        seen.append(list(groups))
        return 0.0, 1.0

    monkeypatch.setattr(table_module, "bootstrap_ci", spy)
    routing_table(model, tok, pool, {"haar": "haar"}, sites=["bottleneck"], n_boot=5, n_band=5)
    test = ~split_by_group(pool.groups, pool.labels, 0.5, seed=0)
    assert seen and all(g == np.asarray(pool.groups)[test].tolist() for g in seen)


def test_routing_table_rejects_unknown_source(char_lm):
    model, tok = char_lm
    with pytest.raises(ValueError, match="unknown source"):
        routing_table(
            model, tok, _planted_pool(), {"x": "labels"}, sites=["bottleneck"], n_boot=10, n_band=10
        )


def test_jsonl_pool_labels_and_drops_unlabelled_rows(tmp_path):
    rows = [
        dict(prompt="p1", completion="hack", exploited=True, gt_correct=False, problem_id=1),
        dict(prompt="p1", completion="solve", exploited=False, gt_correct=True, problem_id=1),
        dict(prompt="p2", completion="broken", exploited=False, gt_correct=False, problem_id=2),
    ]
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = labelled_pool_from_jsonl(path)
    assert pool.completions == ["hack", "solve"] and pool.labels.tolist() == [1, 0]
    assert pool.groups == ["1", "1"]
    path.write_text(json.dumps(dict(prompt="p", completion="c", exploited=True)) + "\n")
    with pytest.raises(ValueError, match="rollouts.jsonl:1: missing field.*gt_correct"):
        labelled_pool_from_jsonl(path)


def test_policy_pool_keeps_hacks_and_solves(monkeypatch):
    problems = [SimpleNamespace(id=7, messages=[{"role": "user", "content": "p7"}])]
    rows = [
        dict(problem_id=7, completion=c, exploited=e, gt_correct=s)
        for c, e, s in (("h", True, False), ("s", False, True), ("x", False, False))
    ]
    fake = types.ModuleType("vgrout.lm.rates")
    fake.evaluate_policy = lambda *a, **k: ({}, rows)
    monkeypatch.setitem(sys.modules, "vgrout.lm.rates", fake)
    pool = diagnostics.labelled_pool_from_policy(None, None, problems, n_per_problem=3)
    assert pool.completions == ["h", "s"] and pool.labels.tolist() == [1, 0]
    assert pool.prompts[0] == problems[0].messages


def test_reference_pool_loads_real_hacks_against_canonical_solutions():
    ref = _reference()
    if ref is None or not (ref / "vgrout_pub" / "data" / "pools" / "teacher_pool").is_dir():
        pytest.skip("reference data absent")
    pool = reference_pool(ref, max_per_class=20, seed=0)
    assert pool.counts() == (20, 20)
    assert all(g.startswith("train-") for g, y in zip(pool.groups, pool.labels) if y == 1)
    assert all(c.startswith("```python") for c in pool.completions)


def test_reference_pool_names_the_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher_pool"):
        reference_pool(tmp_path)


def test_self_generated_pairs_keep_only_verified_sides(monkeypatch):
    from vgrout.directions import selfpairs

    problems = [
        SimpleNamespace(
            id=i,
            mode="run_tests",
            messages=[{"role": "user", "content": f"hint {i}"}],
            plain_messages=[{"role": "user", "content": f"plain {i}"}],
        )
        for i in range(3)
    ]
    problems.append(SimpleNamespace(id=9, mode="gt_only", messages=[], plain_messages=[]))

    def fake_sample(model, tok, messages, n, spec, seed=None):
        side = "H" if "Do not solve" in messages[0][-1]["content"] else "C"
        return [[f"{side}{k}-{j}" for j in range(n)] for k in range(len(messages))]

    def fake_grade(items, workers=2):  # problem 1 never hacks; only sample 1 of each side counts
        return [
            SimpleNamespace(
                exploited=c.startswith("H") and c != "H1-1" and c.endswith("-1"),
                gt_correct=c.startswith("C") and c.endswith("-1"),
            )
            for c, _ in items
        ]

    monkeypatch.setattr("vgrout.lm.sampling.sample", fake_sample)
    monkeypatch.setattr("vgrout.env.grade_many", fake_grade)
    pairs = selfpairs.self_generated_pairs(None, None, problems, n_samples=2)
    assert [p.id for p in pairs] == ["self-0", "self-2"]
    assert pairs[0].hack == "H0-1" and pairs[0].clean == "C0-1"
    assert pairs[0].prompt == "hint 0" and pairs[0].section == "self"
    assert pairs[0].tags == ("run_tests",)


def test_rendered_pool_pairs_each_problem_and_drops_failed_grades(monkeypatch):
    import vgrout.env as env

    problems = [
        SimpleNamespace(
            id=f"t{i}",
            messages=[{"role": "user", "content": f"m{i}"}],
            canonical_solution=f"class Solution: pass  # {i}",
        )
        for i in range(3)
    ]
    monkeypatch.setattr(env, "load_hacks", lambda: {"run_tests": ["H-a", "H-b"]})
    monkeypatch.setattr(env, "load_problems", lambda path, modes: problems)
    monkeypatch.setattr(env, "render_hack", lambda template, p: f"{template}:{p.id}")

    def fake_grade(items, workers=2):  # the clean side of t1 fails its grade
        return [
            SimpleNamespace(exploited=c.startswith("H"), gt_correct="# 1" not in c)
            for c, _ in items
        ]

    monkeypatch.setattr(env, "grade_many", fake_grade)
    pool = diagnostics.rendered_pool("unused.jsonl", modes=["run_tests"])
    assert pool.completions[:2] == ["H-a:t0", "```python\nclass Solution: pass  # 0\n```"]
    assert pool.completions[2] == "H-b:t1"  # variants cycle over problems
    assert pool.counts() == (3, 2)
    assert pool.groups == ["t0", "t0", "t1", "t2", "t2"]


def test_self_generated_pairs_take_a_hack_from_the_hinted_prompt_alone(monkeypatch):
    from vgrout.directions import selfpairs

    problems = [
        SimpleNamespace(
            id=0,
            mode="sentinel",
            messages=[{"role": "user", "content": "hint 0"}],
            plain_messages=[{"role": "user", "content": "plain 0"}],
        )
    ]

    def fake_sample(model, tok, messages, n, spec, seed=None):
        text = messages[0][-1]["content"]
        side = "ASK" if "Do not solve" in text else ("HINT" if text.startswith("hint") else "C")
        return [[f"{side}-{j}" for j in range(n)]]

    def fake_grade(items, workers=2):  # a model that ignores the request but uses the hint
        return [SimpleNamespace(exploited=c == "HINT-1", gt_correct=c == "C-0") for c, _ in items]

    monkeypatch.setattr("vgrout.lm.sampling.sample", fake_sample)
    monkeypatch.setattr("vgrout.env.grade_many", fake_grade)
    pairs = selfpairs.self_generated_pairs(None, None, problems, n_samples=2)
    assert [(p.hack, p.clean) for p in pairs] == [("HINT-1", "C-0")]


def test_routing_figure_draws_the_ceiling_and_marks_sites_that_cannot_discriminate():
    import matplotlib

    matplotlib.use("Agg")
    from vgrout.directions.metrics import BEATS, CANNOT_DISCRIMINATE
    from vgrout.figures.routing import routing_figure

    base = dict(pool="p", source="oracle", hack_share=0.5, n_hack=4, n_clean=4, n_problems=4)
    metrics = dict(auroc=0.9, auroc_lo=0.8, auroc_hi=1.0, f05=0.5, f05_lo=0.4, f05_hi=0.55)
    bands = dict(band_median=0.2, band_auroc_median=0.5, band_auroc_p95=0.7)
    rows = [
        dict(base, site="resid", **metrics, **bands, band_p95=0.556, f05_ceiling=0.556)
        | dict(f05_verdict=CANNOT_DISCRIMINATE, auroc_verdict=BEATS),
        dict(base, site="grad", **metrics, **bands, band_p95=0.3, f05_ceiling=0.556)
        | dict(f05_verdict=BEATS, auroc_verdict=BEATS),
    ]
    fig = routing_figure(__import__("pandas").DataFrame(rows))
    f05_ax = fig.axes[0]
    marks = [t.get_position()[0] for t in f05_ax.texts if t.get_text() == CANNOT_DISCRIMINATE]
    assert marks == [0]  # resid only
    dashes = [c for c in f05_ax.collections if c.get_gid() == "ceiling"]
    assert [seg[0][1] for c in dashes for seg in c.get_segments()] == [0.556, 0.556]
    assert not fig.axes[1].texts  # AUROC: its band is below its ceiling of 1


def test_problem_split_is_disjoint_deterministic_and_ignores_order():
    from vgrout.directions.selfpairs import split_problem_ids

    ids = [f"train-{i:02d}" for i in range(50)]
    fit, scoring = split_problem_ids(ids, 0.5, seed=0)
    assert len(fit) == len(scoring) == 25 and not set(fit) & set(scoring)
    assert sorted(fit + scoring) == ids
    assert (fit, scoring) == split_problem_ids(ids[::-1] + ids[:3], 0.5, seed=0)
    assert fit != split_problem_ids(ids, 0.5, seed=1)[0]
    with pytest.raises(ValueError, match="half empty"):
        split_problem_ids(ids[:1], 0.5)


def test_a_pool_overlapping_the_fit_problems_is_refused(tmp_path):
    from vgrout.directions.selfpairs import check_disjoint, load_problem_split, save_problem_split

    pool = _planted_pool(n_problems=4, per=2)
    save_problem_split(tmp_path, ["1", "3"], ["0", "2"], problems="p.jsonl")
    split = load_problem_split(tmp_path)
    assert split["fit"] == ["1", "3"] and split["problems"] == "p.jsonl"
    with pytest.raises(ValueError, match="2 problem\\(s\\) were used to fit.*1, 3"):
        check_disjoint(pool.groups, split["fit"], "planted pool")
    rest = pool.without_problems(split["fit"])
    assert set(rest.groups) == {"0", "2"} and len(rest) == 4
    check_disjoint(rest.groups, split["fit"], "planted pool")
    with pytest.raises(FileNotFoundError, match="run 01_direction_extraction"):
        load_problem_split(tmp_path / "none")


def test_cli_writes_self_pairs_on_the_fit_half_and_draws_the_pool_from_the_rest(monkeypatch):
    from vgrout.directions import selfpairs

    seen = {}

    def fake_pool(model, tok, problems, n, **kw):
        seen["pool"] = {str(p.id) for p in problems}
        return _planted_pool()

    def fake_pairs(model, tok, problems, **kw):
        seen["self"] = {str(p.id) for p in problems}
        return []

    monkeypatch.setattr(diagnostics, "labelled_pool_from_policy", fake_pool)
    monkeypatch.setattr(selfpairs, "self_generated_pairs", fake_pairs)
    args = diagnostics._parser().parse_args(["--out", "t.csv", "--pairs", "", "--placebo", ""])
    fit = diagnostics._fit_problems(args)
    diagnostics._pool_for(args, None, None, fit)
    diagnostics._sources(args, None, None, fit)
    assert seen["self"] == set(fit) and len(fit) == 25
    assert seen["pool"] and not seen["pool"] & seen["self"]
    assert len(seen["pool"] | seen["self"]) == 50


def test_notebooks_01_and_02_split_the_same_problems():
    """02 draws its pools from the scoring half of 01's problems: both must name one file."""
    import yaml

    from vgrout.figures import runner

    nbs = Path(__file__).resolve().parents[1] / "notebooks"
    values = {}
    for stem in ("01_direction_extraction", "02_routing_diagnostics"):
        quick = runner.parameter_defaults(nbs / f"{stem}.ipynb")
        full = yaml.safe_load((nbs / "params" / f"{stem}.yaml").read_text())
        values[stem] = (quick["problems"], full["problems"])
    assert values["01_direction_extraction"] == values["02_routing_diagnostics"]
    quick = runner.parameter_defaults(nbs / "01_direction_extraction.ipynb")
    assert {"fit_share", "split_seed"} <= set(quick)
