"""The committed figure sets: which notebooks, with which parameters, into which folder.

`make figures` (`python -m vgrout.figures`) re-executes every set in this
order; `python -m vgrout.figures.retrain <set>` retrains a set's grid. A set's
grid is stored under ``results/<set name>`` (named by the ``results``
parameter of its 03 and 04 yaml files).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSet:
    name: str
    """Also the name of the grid under results/ (e.g. results/primary)."""
    params: str
    """Folder of the notebooks' full-run parameters, ``NN_<stem>.yaml``."""
    figures: str
    """Where the figures, their csv files and the manifest go."""
    only: tuple[str, ...] = ()
    """Notebook numbers the set runs (empty: every numbered notebook)."""
    what: str = ""
    """One line for --help and for the driver's progress."""


SETS: dict[str, FigureSet] = {
    s.name: s
    for s in (
        FigureSet(
            "primary",
            "notebooks/params",
            "figures",
            (),
            "environment, directions, routing classifiers and the preregistered primary grid",
        ),
        FigureSet(
            "secondary",
            "notebooks/params/secondary",
            "figures/secondary",
            ("03", "04"),
            "the preregistered secondary grid (exploratory, seeds 0-3)",
        ),
        FigureSet(
            "replication",
            "notebooks/params/replication",
            "figures/replication",
            ("03", "04"),
            "P2 and S2 on eight new seeds (100-107), not preregistered",
        ),
        FigureSet(
            "powered",
            "notebooks/params/powered",
            "figures/powered",
            ("03", "04"),
            "preregistration 2, primary family: 7 arms x 16 seeds (200-215)",
        ),
        FigureSet(
            "monitors",
            "notebooks/params/monitors",
            "figures/monitors",
            ("03", "04"),
            "preregistration 2: route vs penalty vs screen, the label curve (seeds 200-207)",
        ),
    )
}


def train_params(fs: FigureSet) -> dict:
    """The set's 03 (training) yaml; empty for a set without a grid."""
    import yaml

    from vgrout.paths import repo_path

    path = repo_path(fs.params) / "03_grpo_training.yaml"
    if not path.is_file():  # a set without a grid (none yet): nothing to replot
        return {}
    return yaml.safe_load(path.read_text()) or {}


def results_folder(fs: FigureSet) -> str:
    """The committed results a set's notebooks replot ('' when its yaml trains instead)."""
    return str(train_params(fs).get("results", ""))


def set_model(fs: FigureSet) -> str:
    """The model the set's grid trains: an organism recipe name (`organism` is v1) or a
    Hugging Face id or folder. Every set committed so far is on the v1 organism; a study
    on another organism gets sets of its own, so the earlier figures stay."""
    return str(train_params(fs).get("model", "organism"))


def get_set(name: str) -> FigureSet:
    if name not in SETS:
        raise ValueError(f"unknown figure set {name!r}: expected one of {sorted(SETS)}")
    return SETS[name]
