"""Grids as the figures read them: run records from folders or from committed results.

A fake grid of run folders (made-up numbers in the trainer's layout) goes
through `Grid`, the results folder format and the tables notebooks 03 and 04
draw, so each table is checked against numbers worked out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vgrout.figures import ablation, curves, results, shipped
from vgrout.figures.grid import Grid, discover_runs
from vgrout.figures.tables import final_summary


def _fake_run(path: Path, arm: str, seed: int, steps: int = 30, finished: bool = True) -> Path:
    """A run folder in the trainer's layout with made-up numbers: training hack rises
    from step 8 (vanilla) and the routed arm's deployed view hacks little."""
    from vgrout.grpo.config import GRPOConfig

    path.mkdir(parents=True)
    (path / "config.json").write_text(GRPOConfig(arm=arm, seed=seed, steps=steps).to_json())
    hack = (
        (lambda s: min(1.0, max(0.0, (s - 8) / 10))) if arm == "vanilla" else (lambda s: 0.1 * seed)
    )
    rows = [
        dict(
            step=s,
            reward=1.0,
            hack=hack(s),
            solve=0.2,
            zone_keep=0.0,
            zone_absorb=0.9,
            zone_route=0.1,
            gate_auroc=None if s < 3 else 0.7,
            gate_f05=0.5,
            quarantine_share=0.5,
            delta_share=None,
        )
        for s in range(1, steps + 1)
    ]
    (path / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = []
    for step in (10, 20, 30):
        for split in ("test", "iid"):
            for view in ("trained", "deployed"):
                ships = (view == "deployed") == (arm != "vanilla")
                hack = 0.8 if view == "trained" else (0.05 if arm != "vanilla" else 0.6)
                hack += 0.02 * seed + (0.01 if split == "iid" else 0.0)
                by_mode = {
                    "run_tests": dict(n=8, hack=hack, solve=0.3, compile=1.0),
                    "sentinel": dict(n=8, hack=step / 100, solve=0.3, compile=1.0),
                }
                evals.append(
                    dict(
                        step=step,
                        split=split,
                        view=view,
                        ships=ships,
                        n=16,
                        hack=hack,
                        solve=0.3,
                        compile=1.0,
                        by_mode=by_mode,
                    )
                )
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    if finished:
        (path / "result.json").write_text('{"finished": true}')
    return path


@pytest.fixture
def fake_grid(tmp_path):
    for arm in ("routeA", "vanilla"):
        for seed in (0, 1):
            _fake_run(tmp_path / "grid" / arm / f"s{seed}", arm, seed)
    return tmp_path / "grid"


def test_discover_runs_names_notebook_03_when_the_folder_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run 03_grpo_training"):
        discover_runs(tmp_path / "nothing")


def test_discover_runs_puts_vanilla_first_and_refuses_missing_or_unfinished_runs(fake_grid):
    runs = discover_runs(fake_grid)
    assert list(runs) == [("vanilla", 0), ("vanilla", 1), ("routeA", 0), ("routeA", 1)]
    with pytest.raises(FileNotFoundError, match="oracle"):
        discover_runs(fake_grid, arms=["vanilla", "oracle"])
    _fake_run(fake_grid / "oracle" / "s0", "oracle", 0, finished=False)
    with pytest.raises(RuntimeError, match="unfinished"):
        discover_runs(fake_grid, arms=["oracle"], seeds=[0])


def test_curve_table_smooths_per_seed_then_spans_the_seeds(fake_grid):
    grid = Grid.from_run_dirs(discover_runs(fake_grid, arms=["routeA"]))
    t = curves.curve_table(grid.steps(), ["hack", "gate_auroc"], smooth=3)
    t = t.set_index(["metric", "step"])
    assert t.loc[("hack", 5), "lo"] == pytest.approx(0.0) and t.loc[
        ("hack", 5), "hi"
    ] == pytest.approx(0.1)
    assert t.loc[("hack", 5), "mean"] == pytest.approx(0.05) and t.loc[("hack", 5), "seeds"] == 2
    assert np.isnan(t.loc[("gate_auroc", 2), "mean"]), (
        "a step without a gate AUROC must be a gap, not 0"
    )
    assert t.loc[("gate_auroc", 3), "mean"] == pytest.approx(0.7)


def test_views_table_takes_the_shipped_view_per_arm(fake_grid):
    seeds = ablation.grid_seeds(Grid.from_run_dirs(discover_runs(fake_grid)))
    head = shipped.headline_table(shipped.views_table(final_summary(seeds))).set_index(
        ["arm", "split"]
    )
    assert (
        head.loc[("vanilla", "test"), "shipped_hack"]
        == head.loc[("vanilla", "test"), "trained_hack"]
    )
    assert head.loc[("routeA", "test"), "trained_hack"] == pytest.approx(0.81)  # mean of 0.80, 0.82
    assert head.loc[("routeA", "test"), "shipped_hack"] == pytest.approx(0.06)
    assert (
        head.loc[("routeA", "test"), "shipped_hack_ci"] > 0
        and head.loc[("routeA", "test"), "step"] == 30
    )


def test_first_hack_table_averages_seeds_that_got_there_and_leaves_the_rest_unmarked(fake_grid):
    steps = Grid.from_run_dirs(discover_runs(fake_grid)).steps()
    first = shipped.first_hack_table(steps, 0.5, 1).set_index("arm")
    assert first.loc["vanilla", "first_step"] == 13 and first.loc["vanilla", "seeds_reached"] == 2
    assert np.isnan(first.loc["routeA", "first_step"]) and first.loc["routeA", "seeds_reached"] == 0


def test_shipped_tables_use_shipped_rows_and_the_last_evaluation(fake_grid):
    grid = Grid.from_run_dirs(discover_runs(fake_grid))
    worked = shipped.shipped_curves(grid.evals()).set_index(["arm", "split", "metric", "step"])
    assert worked.loc[("routeA", "test", "hack", 20), "rate"] == pytest.approx(0.06)
    assert worked.loc[("vanilla", "test", "hack", 20), "rate"] == pytest.approx(0.81)
    modes = shipped.shipped_mode_table(grid.modes()).set_index(["arm", "split", "mode"])
    assert modes.loc[("routeA", "iid", "sentinel"), "hack"] == pytest.approx(0.30)
    assert modes.loc[("routeA", "iid", "sentinel"), "n"] == 16


def test_grid_figures_render_and_save(fake_grid, tmp_path):
    import matplotlib

    matplotlib.use("Agg")

    from vgrout.figures import style

    grid = Grid.from_run_dirs(discover_runs(fake_grid))
    steps, seeds = grid.steps(), ablation.grid_seeds(grid)
    figs = {
        "curves": curves.curves_figure(
            curves.curve_table(steps, ["reward", "hack"], 5),
            {"reward": "reward", "hack": "hack rate"},
            "t",
            free_y=["reward"],
        ),
        "views": shipped.views_figure(shipped.views_table(final_summary(seeds)), "t"),
        "worked": shipped.worked_figure(
            shipped.shipped_curves(grid.evals()),
            shipped.first_hack_table(steps),
            "t",
            evals=grid.evals(),
        ),
        "modes": shipped.mode_figure(shipped.shipped_mode_table(grid.modes()), "t"),
        "seeds": ablation.seeds_figure(seeds, grid.arms, "t"),
    }
    for name, fig in figs.items():
        assert (style.save_figure(fig, name, tmp_path / "out")).read_bytes()[:4] == b"\x89PNG"


# --- committed results (vgrout.figures.results) ------------------------------------------


META = {"revision": "abc", "organism": {"key": "k"}, "machine": {"cpu": {"model": "m"}}}


def test_results_round_trip_the_records_and_give_the_same_bytes_again(
    fake_grid, tmp_path, monkeypatch
):
    grid = Grid.from_run_dirs(discover_runs(fake_grid))
    folder = results.save_results(grid, tmp_path / "res" / "g", META)
    back = results.open_results(folder)
    assert back.records == grid.records and back.meta["kind"] == "run records"
    assert back.meta["arms"] == ["vanilla", "routeA"] and back.meta["seeds"] == [0, 1]
    pd.testing.assert_frame_equal(back.evals(), grid.evals())
    first = (folder / "runs.jsonl.gz").read_bytes()
    monkeypatch.setattr("time.time", lambda: 2e9)  # another day: gzip would stamp it
    results.save_results(back, folder, META)
    assert (folder / "runs.jsonl.gz").read_bytes() == first, "gzip must carry no timestamp"


def test_results_refuse_a_malformed_line_and_a_grid_json_that_lists_other_runs(fake_grid, tmp_path):
    import gzip

    folder = results.save_results(
        Grid.from_run_dirs(discover_runs(fake_grid)), tmp_path / "g", META
    )
    lines = gzip.decompress((folder / "runs.jsonl.gz").read_bytes()).decode().splitlines()
    broken = dict(json.loads(lines[1]))
    del broken["evals"]
    bad = [lines[0], json.dumps(broken), *lines[2:]]
    (folder / "runs.jsonl.gz").write_bytes(gzip.compress(("\n".join(bad) + "\n").encode()))
    with pytest.raises(ValueError, match=r"runs\.jsonl\.gz:2: expected a run record"):
        results.open_results(folder)
    (folder / "runs.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines[:3]) + "\n").encode()))
    with pytest.raises(ValueError, match="grid.json lists"):
        results.open_results(folder)
    meta = json.loads((folder / "grid.json").read_text())
    del meta["machine"]
    (folder / "grid.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['machine'\]"):
        results.open_results(folder)


def test_a_grid_stored_as_tables_returns_them_and_refuses_what_needs_records(fake_grid, tmp_path):
    grid = Grid.from_run_dirs(discover_runs(fake_grid))
    seeds = ablation.grid_seeds(grid)
    folder = results.save_results(Grid(stored={"ablation_seeds": seeds}), tmp_path / "old", META)
    old = results.open_results(folder)
    assert old.meta["kind"] == "figure tables" and old.seeds == [0, 1]
    pd.testing.assert_frame_equal(ablation.grid_seeds(old), seeds)
    assert (folder / "tables" / "ablation_seeds.csv").read_text() == seeds.to_csv(index=False)
    with pytest.raises(KeyError, match="not stored .* no run records"):
        old.table("ablation_worked", lambda: shipped.shipped_curves(old.evals()))
    with pytest.raises(ValueError, match="cannot be subset"):
        old.select(["routeA"])
    assert old.select(["routeA", "vanilla"], [1, 0]) is old


def test_select_orders_and_restricts_the_records_and_names_what_is_missing(fake_grid):
    grid = Grid.from_run_dirs(discover_runs(fake_grid))
    sub = grid.select(["routeA"], [1])
    assert list(sub.records) == [("routeA", 1)] and sub.gated_arms() == ["routeA"]
    with pytest.raises(KeyError, match=r"\['oracle', 'seed 5'\] not in it"):
        grid.select(["oracle"], [5])


# --- the analysis's words and intervals (vgrout.figures.ablation) ---------------------------


def _seed_rows(values: dict[str, list[float]]) -> pd.DataFrame:
    """A seed table with one shipped iid row per arm and seed, hack = the given values."""
    rows = [
        dict(arm=arm, seed=s, split="iid", view="deployed", ships=True, step=100, hack=v,
             solve=0.5, n=400)
        for arm, vals in values.items()
        for s, v in enumerate(vals)
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "sided, p, words",
    [
        ("less", 0.01, "supported"),
        ("less", 0.2, "not supported"),
        ("two-sided", 0.01, "differs"),
        ("two-sided", 0.2, "no difference shown"),
    ],
)
def test_a_two_sided_comparison_differs_or_shows_no_difference(sided, p, words):
    assert ablation.verdict(p, 8, sided) == words
    assert ablation.verdict(p, 4, sided) == "cannot be decided with this design"


def test_label_share_interval_is_the_point_when_every_seed_agrees_and_clips_outside():
    points = {"absorb": 0.0, "half": 0.5, "oracle": 1.0}
    curve = {"absorb": [0.3] * 4, "half": [0.2] * 4, "oracle": [0.0] * 4}
    same = _seed_rows({**curve, "routeA": [0.25] * 4})
    iv = ablation.label_share_interval(same, points, "routeA", n_boot=200).iloc[0]
    assert iv["share"] == pytest.approx(0.25) and iv["seeds"] == 4
    for end in ("t_low", "t_high", "boot_low", "boot_high"):
        assert iv[end] == pytest.approx(0.25), end
    worse = _seed_rows({**curve, "routeA": [0.4, 0.5, 0.45, 0.6]})
    iv = ablation.label_share_interval(worse, points, "routeA", n_boot=200).iloc[0]
    assert pd.isna(iv["share"])
    assert iv["t_low"] == iv["t_high"] == iv["boot_low"] == iv["boot_high"] == 0.0
    spread = _seed_rows({**curve, "routeA": [0.31, 0.29, 0.1, 0.3]})
    iv = ablation.label_share_interval(spread, points, "routeA", n_boot=500).iloc[0]
    assert iv["boot_low"] < iv["share"] < iv["boot_high"]
    assert iv["t_low"] == 0.0 < iv["share"] < iv["t_high"]
    title = ablation.label_title(ablation.label_share_interval(spread, points, "routeA"))
    assert f"t 0% to {iv['t_high']:.0%}" in title and "bootstrap" in title


def test_every_seed_keeps_one_marker_and_one_offset_in_every_arm():
    import matplotlib

    matplotlib.use("Agg")
    seeds = _seed_rows({"absorb": [0.3, 0.2, 0.1], "routeA": [0.25, 0.1, 0.4]})
    fig = ablation.seeds_figure(seeds, ["absorb", "routeA"], "t")
    ax = fig.axes[0]
    drawn = {c.get_label(): c for c in ax.collections if c.get_label().startswith("seed")}
    assert sorted(drawn) == ["seed 0", "seed 1", "seed 2"]
    styles = ablation.seed_markers(range(16))  # a 16-seed grid: every seed told apart
    assert len({(m["marker"], m["facecolor"]) for m in styles.values()}) == 16
    for s in (0, 1, 2):
        xs = drawn[f"seed {s}"].get_offsets()[:, 0]
        assert len(xs) == 2 and xs[1] - xs[0] == pytest.approx(1.0), "same offset in each arm"
    assert len({round(drawn[f"seed {s}"].get_offsets()[0, 0], 6) for s in (0, 1, 2)}) == 3


def test_every_arm_of_a_large_grid_gets_its_own_colour():
    from vgrout.figures.style import arm_colors

    for n in (3, 10, 17):
        arms = ["vanilla"] + [f"arm{i}" for i in range(n)]
        colors = arm_colors(arms)
        assert len({tuple(c) for c in colors.values()}) == n + 1, n
