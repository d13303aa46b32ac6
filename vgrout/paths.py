"""Where the project's data and caches live (overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VGROUT_DATA", REPO / "data"))
CACHE = Path(os.environ.get("VGROUT_CACHE", REPO / ".cache"))
RUNS = Path(os.environ.get("VGROUT_RUNS", REPO / "runs"))
TRAIN_PROBLEMS = DATA / "problems" / "train.jsonl"
TEST_PROBLEMS = DATA / "problems" / "test.jsonl"
HACKS = DATA / "hacks" / "hacks.jsonl"
PAIRS = DATA / "pairs" / "hack_pairs.md"
ORGANISM = DATA / "organism"
"""The shipped CPU organism (vgrout.lm.shipped); `make organism` rebuilds it."""


def reference_dir() -> Path | None:
    """The external reference data folder, or None when this clone lacks it.

    VGROUT_REFERENCE names it; otherwise it is what `python -m
    vgrout.env.reference` fetched into ``<cache>/reference``. Either holds
    ``vgrout_pub/data/...``.
    """
    env = os.environ.get("VGROUT_REFERENCE")
    path = Path(env) if env else CACHE / "reference"
    return path if (path / "vgrout_pub").is_dir() else None


def repo_path(path: str | Path) -> Path:
    """An absolute path, or one relative to the repository root.

    Why: papermill runs notebooks from the repository root and nbval from
    ``notebooks/``; resolving against the repository makes a parameter mean
    the same folder under both.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO / p
