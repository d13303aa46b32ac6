"""The shipped organism (data/organism): loaded, never built; stale when its sources change."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from vgrout import paths
from vgrout.lm import organism, shipped
from vgrout.lm.load import load_policy


@pytest.mark.parametrize("name", sorted(organism.RECIPES))
def test_the_shipped_organism_is_what_the_current_recipe_and_data_build(name):
    problems = shipped.drift(name=name)
    assert not problems, (
        f"{shipped.shipped_dir(name)} is stale:\n  "
        + "\n  ".join(problems)
        + f"\nRebuild: {shipped.rebuild_command(name)}"
    )


def _data_copy(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for rel in organism.OrganismRecipe().data_files:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths.DATA / rel, data / rel)
    monkeypatch.setattr(paths, "DATA", data)
    return data


def test_drift_names_the_data_file_edited_without_a_rebuild(tmp_path, monkeypatch):
    data = _data_copy(tmp_path, monkeypatch)
    assert shipped.drift(paths.ORGANISM) == []
    with open(data / "hacks/hacks.jsonl", "a") as f:
        f.write("\n")
    assert shipped.drift(paths.ORGANISM) == [
        "data file hacks/hacks.jsonl changed since the organism was built"
    ]


def test_drift_names_a_changed_recipe_field(monkeypatch):
    changed = replace(organism.RECIPES["organism"], lr=1e-3)
    monkeypatch.setitem(organism.RECIPES, "organism", changed)
    problems = shipped.drift()
    assert len(problems) == 1 and problems[0].startswith("recipe field lr: shipped 0.003")


def test_drift_names_weights_that_are_not_the_recorded_file(tmp_path):
    copy = tmp_path / "organism"
    shutil.copytree(paths.ORGANISM, copy)
    blob = bytearray((copy / shipped.WEIGHTS).read_bytes())
    blob[-1] ^= 1
    (copy / shipped.WEIGHTS).write_bytes(bytes(blob))
    assert shipped.drift(copy) == [f"{copy / shipped.WEIGHTS} is not the file its record names "
                                   "(sha256 differs)"]  # fmt: skip


def test_load_policy_loads_the_shipped_organism_and_never_builds(tmp_path, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("load_policy('organism') built an organism")

    monkeypatch.setattr(organism, "build", no_build)
    model, tok = load_policy("organism")
    assert model.config._name_or_path == str(paths.ORGANISM)
    monkeypatch.setattr(paths, "ORGANISM", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="make organism"):
        load_policy("organism")


def test_ship_writes_the_key_and_hashes_that_tie_the_weights_to_their_sources(tmp_path):
    quick = organism.OrganismRecipe(steps=2, batch_size=4)
    built = organism.build(quick, tmp_path / "built")
    record = shipped.ship(built, tmp_path / "shipped")
    assert record["key"] == organism.recipe_hash(quick)
    assert record["weights_sha256"] == shipped.sha256(tmp_path / "shipped" / shipped.WEIGHTS)
    assert record["data_sha256"] == shipped.data_digests(quick)
    assert shipped.read_record(tmp_path / "shipped") == record
    model, _ = load_policy(str(tmp_path / "shipped"))
    assert sum(p.numel() for p in model.parameters()) == record["n_params"]
