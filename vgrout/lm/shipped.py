"""The organisms as the project ships them: `data/<recipe name>/`, their records, and drift.

Builds are not reproducible across machines: a rebuild that differs only in
float rounding moves solve by ~0.05 and the step at which hacking takes off by
tens of steps (docs/organism.md). So the project ships one build of each named
recipe (`organism.RECIPES`: data/organism, data/organism_v2, ...) and every figure
starts from one; `load_policy("organism")` loads it and never builds.

The folder holds the weights, tokenizer and config beside `organism.json`:
the recipe, the warm-start losses, and what ties the weights to their sources:
`key` (the recipe hash, `organism.recipe_hash`), `data_sha256` (the bytes of
every data file the corpus was read from) and `weights_sha256`. `drift()`
compares those with the working tree, so editing a problem, hack or pair
without rebuilding fails a test that names the file and the command to run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from vgrout import paths
from vgrout.files import atomic_dir

RECORD = "organism.json"
WEIGHTS = "model.safetensors"
REBUILD = (
    "make organism (python -m vgrout.lm build --output data/organism), then commit data/organism"
)


def rebuild_command(name: str = "organism") -> str:
    """How to rebuild and ship the organism of recipe `name`."""
    if name == "organism":
        return REBUILD
    return (
        f"python -m vgrout.lm build --recipe {name} --output data/{name}, then commit data/{name}"
    )


def shipped_dir(name: str = "organism") -> Path:
    """The folder the organism of recipe `name` ships in (data/organism for v1)."""
    from vgrout.lm.organism import RECIPES

    if name not in RECIPES:
        raise ValueError(f"unknown organism {name!r}: expected one of {sorted(RECIPES)}")
    return paths.ORGANISM if name == "organism" else paths.DATA / name


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_digests(recipe) -> dict[str, str]:
    """{data file: sha256 of its bytes} for every file the recipe's corpus reads."""
    return {rel: sha256(paths.DATA / rel) for rel in recipe.data_files}


def read_record(folder: Path | None = None) -> dict:
    """The shipped organism's organism.json; raises naming the folder when it is absent."""
    folder = Path(folder or paths.ORGANISM)
    path = folder / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no organism here; build one with {REBUILD}")
    return json.loads(path.read_text())


def ship(built: Path, out: Path | None = None) -> dict:
    """Copy a built organism folder to `out` (default data/organism) with its record.

    The copy is swapped in whole (files.atomic_dir), so an interrupted ship
    leaves the old organism or the new one. Returns the record written.
    """
    from vgrout.lm.organism import OrganismRecipe, recipe_hash

    out = Path(out or paths.ORGANISM)
    info = json.loads((Path(built) / RECORD).read_text())
    names = {f.name for f in fields(OrganismRecipe)}
    fields_read: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in info["recipe"].items()
    }
    recipe = OrganismRecipe(**fields_read)
    if set(info["recipe"]) != names:
        raise ValueError(f"{built}/{RECORD}: recipe fields differ from OrganismRecipe's")
    record = {
        **info,
        "key": recipe_hash(recipe),
        "data_sha256": data_digests(recipe),
        "weights_sha256": sha256(Path(built) / WEIGHTS),
    }

    def write(tmp: Path) -> None:
        for f in sorted(Path(built).iterdir()):
            if f.is_file() and f.name != RECORD:
                shutil.copyfile(f, tmp / f.name)
        (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n")

    atomic_dir(out, write)
    return record


def drift(folder: Path | None = None, name: str = "organism") -> list[str]:
    """What no longer matches the shipped build of recipe `name`: recipe fields, data
    files, weights.

    Empty when the shipped organism is what the current recipe and data would
    build. Each entry says what changed, so a failing check points at the edit.
    A record written before a field was added holds the field's default.
    """
    from vgrout.lm.organism import ADDED, RECIPES, OrganismRecipe, recipe_hash

    folder = Path(folder or shipped_dir(name))
    record = read_record(folder)
    now = RECIPES[name]
    problems = []
    added = {f.name: f.default for f in fields(OrganismRecipe) if f.metadata.get(ADDED)}
    shipped_recipe = {**added, **record["recipe"]}
    for key, value in asdict(now).items():
        old = shipped_recipe.get(key)
        old = tuple(old) if isinstance(old, list) else old
        if old != value:
            problems.append(f"recipe field {key}: shipped {old!r}, current {value!r}")
    digests = data_digests(now)
    for rel, digest in digests.items():
        if record.get("data_sha256", {}).get(rel) != digest:
            problems.append(f"data file {rel} changed since the organism was built")
    if not problems and record.get("key") != recipe_hash(now):
        problems.append(f"key {record.get('key')} != current recipe hash {recipe_hash(now)}")
    if sha256(folder / WEIGHTS) != record.get("weights_sha256"):
        problems.append(f"{folder / WEIGHTS} is not the file its record names (sha256 differs)")
    return problems
