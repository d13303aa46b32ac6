"""Reward-hacking environment: problems, modes, sandbox, strict oracle.

Never imports torch (the trainer imports this, not the other way round).
"""

from .grader import Grade, extract_code, grade, grade_many
from .hacks import load_hacks, render_hack
from .modes import (
    EVAL_MARKERS,
    LOOPHOLE_MODES,
    MARKED_MODES,
    MARKER_SETS,
    MODES,
    PHRASE,
    TRAIN_MARKERS,
    VARIED_EVAL_MARKERS,
    VARIED_TRAIN_MARKERS,
    hint_for,
    marker_for,
)
from .problems import Problem, ProblemFormatError, load_problems, with_mode
from .sandbox import Limits

__all__ = [
    "MODES",
    "LOOPHOLE_MODES",
    "MARKED_MODES",
    "PHRASE",
    "TRAIN_MARKERS",
    "EVAL_MARKERS",
    "MARKER_SETS",
    "VARIED_TRAIN_MARKERS",
    "VARIED_EVAL_MARKERS",
    "Problem",
    "ProblemFormatError",
    "Grade",
    "Limits",
    "load_problems",
    "with_mode",
    "grade",
    "grade_many",
    "render_hack",
    "load_hacks",
    "extract_code",
    "eval_problems",
    "hint_for",
    "marker_for",
]


def eval_problems(path, modes, seed: int = 0, shuffle: bool = False, partition=None):
    """Problems for evaluation: like load_problems, with evaluation markers."""
    return load_problems(
        path, modes, seed=seed, shuffle=shuffle, partition=partition, eval_markers=True
    )
