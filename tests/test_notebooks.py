"""Notebooks are stored clean and parameterisable; the figures driver runs them in order.

The notebooks themselves are executed by nbval (``pytest --nbval-lax notebooks/``);
these tests check what nbval cannot: that git holds no outputs (a stale output
would be mistaken for a result), that papermill has exactly one cell to inject
parameters after, and that every full-run yaml only sets parameters its notebook
declares (papermill would otherwise inject an unused variable silently).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import write_notebook

from vgrout.figures import runner

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import strip_notebooks  # noqa: E402 - tools/ is not a package; importable after the path insert

NOTEBOOKS = REPO / "notebooks"
PARAMS = NOTEBOOKS / "params"


def _tracked_notebooks() -> list[Path]:
    """Notebooks in git (every numbered notebook on disk when git is unavailable)."""
    r = subprocess.run(
        ["git", "ls-files", "notebooks/*.ipynb"], cwd=REPO, capture_output=True, text=True
    )
    tracked = [REPO / line for line in r.stdout.split()] if r.returncode == 0 else []
    return sorted(set(tracked) | set(runner.discover(NOTEBOOKS)))


ALL = _tracked_notebooks()


def test_the_numbered_notebooks_exist():
    names = [p.name for p in runner.discover(NOTEBOOKS)]
    for expected in (
        "00_environment.ipynb",
        "01_direction_extraction.ipynb",
        "02_routing_diagnostics.ipynb",
        "03_grpo_training.ipynb",
        "04_ablation_figures.ipynb",
    ):
        assert expected in names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_has_no_stored_outputs(path):
    dirty = strip_notebooks.dirty_cells(json.loads(path.read_text()))
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs; run python tools/strip_notebooks.py {path}"
    )


def test_the_output_check_sees_an_output():
    nb = {"cells": [{"cell_type": "code", "outputs": [{"text": "0.42"}], "execution_count": 3}]}
    assert strip_notebooks.dirty_cells(nb) == [0]
    assert strip_notebooks.dirty_cells(strip_notebooks.strip(nb)) == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_has_exactly_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_parameters_are_literals_with_a_figures_dir(path):
    defaults = runner.parameter_defaults(path)
    assert "figures_dir" in defaults, "the driver injects figures_dir; the notebook must declare it"
    assert not str(defaults["figures_dir"]).startswith("figures"), (
        "quick defaults must not overwrite the committed full-run figures"
    )


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_params_yaml_keys_are_notebook_parameters(path):
    yaml_path = PARAMS / f"{path.stem}.yaml"
    assert yaml_path.is_file(), f"{yaml_path} is missing"
    keys = set(yaml.safe_load(yaml_path.read_text()) or {})
    declared = set(runner.parameter_defaults(path))
    assert keys <= declared, f"{yaml_path.name} sets undeclared {sorted(keys - declared)}"
    assert "figures_dir" not in keys
    assert runner.load_params(path, PARAMS).keys() == keys


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_runs_on_the_python3_kernel(path):
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == runner.KERNEL


def test_grid_notebooks_share_their_runs_folder():
    """04 reads what 03 trained: the quick defaults and the full yamls must name the same folder."""
    train, figs = NOTEBOOKS / "03_grpo_training.ipynb", NOTEBOOKS / "04_ablation_figures.ipynb"
    assert (
        runner.parameter_defaults(train)["runs_dir"] == runner.parameter_defaults(figs)["runs_dir"]
    )
    assert (
        runner.load_params(train, PARAMS)["runs_dir"]
        == runner.load_params(figs, PARAMS)["runs_dir"]
    )
    assert set(runner.load_params(figs, PARAMS)["arms"]) == set(
        runner.load_params(train, PARAMS)["arms"]
    )


def test_parameter_defaults_refuse_computed_values(tmp_path):
    path = write_notebook(tmp_path, "00_x.ipynb", "n = 1\nm = n + 1\n", "")
    with pytest.raises(ValueError, match="'m' is not a Python literal"):
        runner.parameter_defaults(path)


def test_load_params_refuses_unknown_keys(tmp_path):
    path = write_notebook(tmp_path, "00_x.ipynb", "n = 1\nfigures_dir = 'x'\n", "")
    (tmp_path / "00_x.yaml").write_text("n: 2\nsteps: 5\n")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['steps'\]"):
        runner.load_params(path, tmp_path)


def test_discover_orders_by_number_and_refuses_duplicates(tmp_path):
    for name in ("10_b.ipynb", "02_a.ipynb", "notes.ipynb"):
        write_notebook(tmp_path, name, "n = 1\n", "")
    assert [p.name for p in runner.discover(tmp_path)] == ["02_a.ipynb", "10_b.ipynb"]
    write_notebook(tmp_path, "02_c.ipynb", "n = 1\n", "")
    with pytest.raises(ValueError, match="share the number"):
        runner.discover(tmp_path)


@pytest.mark.slow
def test_run_all_executes_in_order_and_writes_the_manifest(tmp_path):
    nbs, params, figs = tmp_path / "nb", tmp_path / "params", tmp_path / "figs"
    nbs.mkdir(), params.mkdir()
    body = """
        from pathlib import Path
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
        (Path(figures_dir) / f"{tag}.csv").write_text(f"n\\n{n}\\n")
    """
    write_notebook(nbs, "00_a.ipynb", "n = 1\ntag = 'a'\nfigures_dir = 'unused'\n", body)
    write_notebook(nbs, "01_b.ipynb", "n = 1\ntag = 'b'\nfigures_dir = 'unused'\n", body)
    (params / "00_a.yaml").write_text("n: 7\n")
    (params / "01_b.yaml").write_text("")
    m = runner.run_all(nbs, params, figs, tmp_path / "executed")
    assert [e["notebook"] for e in m["notebooks"]] == ["00_a.ipynb", "01_b.ipynb"]
    assert (figs / "a.csv").read_text() == "n\n7\n" and (figs / "b.csv").read_text() == "n\n1\n"
    saved = json.loads((figs / "manifest.json").read_text())
    assert saved["status"] == "ok" and saved["notebooks"][0]["parameters"]["n"] == 7
    assert all(e["wall_s"] > 0 for e in saved["notebooks"]) and "commit" in saved["git"]
    assert (tmp_path / "executed" / "01_b.ipynb").is_file()


@pytest.mark.slow
def test_a_failing_notebook_stops_the_run_and_is_named(tmp_path):
    nbs, figs = tmp_path / "nb", tmp_path / "figs"
    nbs.mkdir()
    write_notebook(nbs, "00_bad.ipynb", "figures_dir = 'x'\n", "raise KeyError('no such site')")
    write_notebook(
        nbs, "01_never.ipynb", "figures_dir = 'x'\n", "open(figures_dir + '/ran', 'w').close()"
    )
    with pytest.raises(
        runner.NotebookFailed, match=r"00_bad\.ipynb failed.*KeyError.*no such site"
    ):
        runner.run_all(nbs, tmp_path, figs, tmp_path / "executed", quick=True)
    saved = json.loads((figs / "manifest.json").read_text())
    assert saved["status"] == "failed: 00_bad.ipynb"
    assert not (figs / "ran").exists()


# --- figure helpers the notebooks call (vgrout.directions.crossfit, vgrout.figures.style) ---------------------------


def test_crossfit_scores_each_pair_with_a_direction_fit_without_it():
    from vgrout.directions import crossfit
    from vgrout.directions.extract import mean_diff_direction, score

    g = torch.Generator().manual_seed(0)
    hack, clean = (
        torch.randn(6, 3, 4, generator=g),
        torch.randn(6, 3, 4, generator=g),
    )  # [pairs, rows, width]
    ids = [f"p{i}" for i in range(6)]
    df = crossfit.crossfit_pair_scores({"resid": hack}, {"resid": clean}, ids, "authored", folds=3)
    others = [i for i in range(6) if i % 3 != 0]  # pair 0 is in fold 0 with pair 3
    d = mean_diff_direction(hack[others], clean[others])
    got = df[(df["pair"] == "p0") & (df["side"] == "hack")]["score"].item()
    assert got == pytest.approx(score(hack[:1], d).item(), rel=1e-6)
    assert len(df) == 6 * 2


def test_separation_summary_counts_pairs_whose_hack_side_scores_higher():

    from vgrout.directions import crossfit

    rows = [
        dict(source="s", site="resid", pair=p, side=side, score=v)
        for p, h, c in (("a", 2.0, 1.0), ("b", 3.0, 1.0), ("c", 0.0, 1.0))
        for side, v in (("hack", h), ("clean", c))
    ]
    out = crossfit.separation_summary(pd.DataFrame(rows)).iloc[0]
    assert out["n_pairs"] == 3 and out["hack_above_clean"] == pytest.approx(2 / 3)


def test_direction_cosines_are_one_with_itself_and_minus_one_with_its_negation():
    from vgrout.directions import crossfit

    v = torch.nn.functional.normalize(torch.randn(3, 5), dim=-1)
    df = crossfit.direction_cosines({"a": {"resid": v}, "b": {"resid": -v}})
    cos = df.set_index(["source_a", "source_b"])["cosine"]
    assert cos[("a", "a")] == pytest.approx(1.0) and cos[("a", "b")] == pytest.approx(-1.0)


def test_load_directions_refuses_directions_from_other_settings(tmp_path):
    from vgrout.directions import extract

    path = extract.save_directions(
        tmp_path / "d.pt",
        {"authored": {"resid": torch.ones(2, 3)}},
        dict(model="organism", rank=8, init="gaussian", seed=0),
    )
    assert torch.equal(extract.load_directions(path, rank=8)["authored"]["resid"], torch.ones(2, 3))
    with pytest.raises(ValueError, match="rank"):
        extract.load_directions(path, rank=32)
    with pytest.raises(FileNotFoundError, match="run 01_direction_extraction"):
        extract.load_directions(tmp_path / "missing.pt")


def test_save_figure_writes_png_and_csv_and_refuses_low_dpi(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgrout.figures import style

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    style.save_figure(fig, "line", tmp_path, data=pd.DataFrame({"x": [0, 1], "y": [0, 1]}))
    assert (tmp_path / "line.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "line.csv").read_text().splitlines()[0] == "x,y"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"
    with pytest.raises(ValueError, match="dpi"):
        style.save_figure(fig, "low", tmp_path, dpi=72)
    with pytest.raises(ValueError, match="empty"):
        style.save_table(pd.DataFrame(), "nothing", tmp_path)


# --- run-grid tables and figures for 03 and 04 (vgrout.figures.grpo_runs) ---------------


def test_the_manifest_names_the_dirty_files_it_was_written_from(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)  # fmt: skip

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    git("add", "a.py", "b.py")
    git("commit", "-qm", "start")
    clean = runner.git_revision(tmp_path)
    assert clean["dirty"] is False and clean["dirty_files"] == [] and len(clean["commit"]) == 40
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "untracked.py").write_text("")
    dirty = runner.git_revision(tmp_path)
    assert dirty["dirty"] is True and dirty["dirty_files"] == ["b.py"]


def test_the_manifest_records_the_shipped_organism():
    from vgrout.lm.shipped import read_record, sha256

    rec = runner.organism_record()
    shipped = read_record()
    assert rec == {"name": "organism", "key": shipped["key"],
                   "weights_sha256": shipped["weights_sha256"]}  # fmt: skip
    assert rec["weights_sha256"] == sha256(runner.REPO / "data" / "organism" / "model.safetensors")
    assert runner.organism_record("Qwen/Qwen3-4B") == {"name": "Qwen/Qwen3-4B"}


def test_a_grid_of_another_organism_is_refused_by_the_set_it_is_stored_under():
    v1 = runner.organism_record("organism")
    runner.check_organism(v1, "organism", "results/primary")  # its own organism: fine
    other = {**v1, "name": "organism_v2", "key": "0123456789ab"}
    with pytest.raises(ValueError, match=r"results/primary: trained on organism organism_v2"):
        runner.check_organism(other, "organism", "results/primary")


def test_every_committed_grid_was_trained_on_the_organism_its_set_names():
    from vgrout.figures.results import read_meta
    from vgrout.figures.sets import SETS, results_folder, set_model

    for fs in SETS.values():
        folder = results_folder(fs)
        if folder and (runner.REPO / folder / "grid.json").is_file():
            runner.check_organism(read_meta(folder).get("organism"), set_model(fs), folder)


PREREGISTERED = {  # figure set: the preregistration that planned its tests ("" = none)
    "primary": "preregistration.md",
    "secondary": "preregistration.md",
    "replication": "",
    "powered": "preregistration_powered.md",
    "monitors": "preregistration_powered.md",
}


@pytest.mark.parametrize("name", list(PREREGISTERED))
def test_preregistered_grids_are_consistent(name):
    """The grids the preregistrations name: 03 and 04 share runs and arms, every 04
    comparison names arms of the grid and appears, with its arms, in its preregistration."""
    from vgrout.figures.ablation import check_comparisons
    from vgrout.figures.sets import SETS

    params = REPO / SETS[name].params
    train, figs = NOTEBOOKS / "03_grpo_training.ipynb", NOTEBOOKS / "04_ablation_figures.ipynb"
    for nb in (train, figs):
        keys = set(yaml.safe_load((params / f"{nb.stem}.yaml").read_text()))
        assert keys <= set(runner.parameter_defaults(nb)), f"{params}/{nb.stem}.yaml"
    t, f = runner.load_params(train, params), runner.load_params(figs, params)
    assert t["runs_dir"] == f["runs_dir"] and set(f["arms"]) == set(t["arms"])
    assert t["results"] == f["results"] and set(f["seeds"]) <= set(t["seeds"])
    check_comparisons(f["comparisons"], list(t["arms"]))
    if not PREREGISTERED[name]:
        return
    lines = (NOTEBOOKS.parent / "docs" / PREREGISTERED[name]).read_text().splitlines()
    for c in f["comparisons"]:
        if c["family"] == "window":
            continue
        assert any(f"| {c['id']} |" in ln and f"{c['a']} vs {c['b']}" in ln for ln in lines), c
