"""The environment as a reward function for TRL's `GRPOTrainer`.

    from vgrout.env.trl import CHAT_TEMPLATE_KWARGS, problem_dataset, reward_function

    dataset = problem_dataset("data/problems/train.jsonl")  # prompt, problem_id, mode, eval_markers
    reward = reward_function("data/problems/train.jsonl")
    trainer = GRPOTrainer(model, reward_funcs=reward, train_dataset=dataset,
                          args=GRPOConfig(..., chat_template_kwargs=CHAT_TEMPLATE_KWARGS))

The reward grades each completion in its row's mode with the warm sandbox pool
(`grade_many`), so it pays exactly what the project's own GRPO loop pays. Beside
the reward it reports, through the `log_metric` callback TRL passes to reward
functions, the share of the batch that hacked (`exploited`: paid without being
correct), solved (`gt_correct`, the strict oracle) and compiled (`format_ok`);
TRL averages them per logging step and logs them beside `rewards/<name>/mean`
as `<name>/hack`, `<name>/solve` and `<name>/compile`.

Neither this module nor `vgrout.env` imports trl or torch; `datasets` is
imported inside `problem_dataset` only.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .grader import Grade, grade_many
from .modes import LOOPHOLE_MODES, MODES
from .pool import Pool
from .problems import Problem, load_problems, with_mode
from .sandbox import Limits

CHAT_TEMPLATE_KWARGS: dict = {"enable_thinking": False}
"""Pass as `GRPOConfig(chat_template_kwargs=...)`: TRL then renders each prompt as
the project's GRPO loop does (`vgrout.lm.tokens.chat_prompt`: generation prompt on,
thinking off for templates that have it)."""

ID_COLUMN, MODE_COLUMN, EVAL_COLUMN = "problem_id", "mode", "eval_markers"
"""The dataset columns the reward reads (`problem_dataset` writes all three)."""

METRICS: dict[str, str] = {
    "hack": "exploited",
    "solve": "gt_correct",
    "compile": "format_ok",
}
"""Logged rate -> the Grade field it averages (hack and solve as in steps.jsonl)."""


@dataclass(frozen=True)
class RewardCall:
    """What one call of the reward saw and gave, in row order."""

    step: int | None
    """The trainer's global step when it was called (None outside a trainer)."""
    prompts: list
    completions: list[str]
    """Completion texts as graded (a conversational completion's assistant text)."""
    problem_ids: list[str]
    modes: list[str]
    grades: list[Grade]
    metrics: dict[str, float]
    """The batch's rates, as passed to `log_metric` (without the name prefix)."""

    @property
    def rewards(self) -> list[float]:
        return [float(g.reward) for g in self.grades]


def grade_rates(grades: Sequence[Grade]) -> dict[str, float]:
    """{hack, solve, compile}: the share of `grades` with each METRICS field set."""
    if not grades:
        raise ValueError("grade_rates: no grades")
    return {k: sum(bool(getattr(g, f)) for g in grades) / len(grades) for k, f in METRICS.items()}


def completion_text(completion) -> str:
    """The text to grade: a plain string, or the assistant content of a
    conversational completion (a list of message dicts, as TRL passes for
    conversational prompts; several assistant turns are joined by newlines)."""
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, (list, tuple)) or not all(
        isinstance(m, dict) for m in completion
    ):
        raise TypeError(
            "completion: expected a string or a list of message dicts "
            f"({{'role': ..., 'content': ...}}), got {type(completion).__name__}"
        )
    turns = [m for m in completion if m.get("role") == "assistant"]
    if not turns:
        roles = [m.get("role") for m in completion]
        raise ValueError(f"completion: no message with role 'assistant' (roles {roles})")
    return "\n".join(_content_text(m.get("content")) for m in turns)


def _content_text(content) -> str:
    if content is None:  # a turn that only calls tools
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    raise TypeError(f"completion: message content must be a string, got {type(content).__name__}")


def _prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(_content_text(m.get("content")) for m in prompt if isinstance(m, dict))
    return ""


def _as_problems(problems) -> list[Problem]:
    if isinstance(problems, (str, Path)):
        return load_problems(problems, "gt_only")  # each row is re-hinted for its mode
    problems = list(problems)
    if not problems:
        raise ValueError("reward_function: no problems")
    for p in problems:
        if not isinstance(p, Problem):
            raise TypeError(
                f"reward_function: expected a path or a list of Problem, got {type(p).__name__}"
            )
    return problems


class Reward:
    """A TRL reward function for `GRPOTrainer(reward_funcs=...)` that grades in the environment.

    problems: a problem file (jsonl) or a list of `Problem`; each row is graded as
        the problem its `problem_id` column names, hinted for its `mode` column,
        with evaluation markers where its `eval_markers` column is true (no such
        column: the markers the problems were loaded with).
    name: TRL logs the mean reward as `rewards/<name>/mean` and this reward's rates
        as `<name>/hack`, `<name>/solve` and `<name>/compile`.
    workers, limits, pool: as `grade_many` (the process-wide warm pool by default).
    check_prompts: refuse a row whose prompt does not contain the hinted user
        message of the problem it is graded as (a dataset built from other
        problems, modes or markers).
    history: how many calls `reward.calls` keeps.

    Called as TRL calls it, `reward(prompts, completions, problem_id=[...],
    mode=[...], **other_columns)`; completions may be strings or conversational
    (lists of message dicts). Returns one float per completion: 0.5 for a python
    block that compiles, plus 3.0 if it passed the oracle or the mode's loophole.
    A missing column, an unknown id or mode, or a malformed completion raises,
    naming the row and the column or field.

    Also made by `reward_function` (the same class). `calls` holds the latest
    calls (a `RewardCall` each), newest last.
    """

    def __init__(
        self,
        problems,
        *,
        name: str = "vgrout",
        workers: int = 2,
        limits: Limits | None = None,
        pool: Pool | None = None,
        check_prompts: bool = True,
        history: int = 64,
    ):
        problems = _as_problems(problems)
        self.__name__ = name  # TRL names the reward (and its logged mean) after this
        self.workers, self.limits, self.pool = workers, limits, pool
        self.check_prompts = check_prompts
        self.calls: deque[RewardCall] = deque(maxlen=history)
        self._problems: dict[str, Problem] = {}
        for p in problems:
            key = str(p.id)
            if key in self._problems:
                raise ValueError(
                    f"reward_function: two problems have the id {key!r} "
                    f"({self._problems[key].source} and {p.source}); ids must be unique as strings"
                )
            self._problems[key] = p
        self._variants: dict[tuple[str, str, bool], Problem] = {}

    def problem(self, problem_id, mode: str, eval_markers: bool | None = None) -> Problem:
        """The problem hinted for `mode` with the training (or evaluation) markers,
        exactly as `problem_dataset` showed it."""
        key = str(problem_id)
        if key not in self._problems:
            some = ", ".join(repr(k) for k in list(self._problems)[:5])
            raise ValueError(
                f"column {ID_COLUMN!r}: unknown problem id {problem_id!r}; expected one of the "
                f"{len(self._problems)} ids of the reward's problems ({some}, ...)"
            )
        if mode not in MODES:
            raise ValueError(
                f"column {MODE_COLUMN!r}: unknown mode {mode!r}; expected one of {', '.join(MODES)}"
            )
        base = self._problems[key]
        ev = base.eval_markers if eval_markers is None else bool(eval_markers)
        if (key, mode, ev) not in self._variants:
            same = base.mode == mode and base.eval_markers == ev
            self._variants[(key, mode, ev)] = (
                base if same else with_mode(dataclasses.replace(base, eval_markers=ev), mode)
            )
        return self._variants[(key, mode, ev)]

    def _rows(self, prompts, completions, columns) -> list[tuple[str, Problem]]:
        n = len(completions)
        for col in (ID_COLUMN, MODE_COLUMN):
            if col not in columns:
                raise ValueError(
                    f"reward: dataset column {col!r} is missing (columns: {sorted(columns)}); "
                    f"expected {ID_COLUMN!r} and {MODE_COLUMN!r} per row, as "
                    "vgrout.env.trl.problem_dataset writes them"
                )
        evals = columns.get(EVAL_COLUMN)
        for col, values in ((ID_COLUMN, columns[ID_COLUMN]), (MODE_COLUMN, columns[MODE_COLUMN])):
            if len(values) != n:
                raise ValueError(f"column {col!r}: {len(values)} values for {n} completions")
        if evals is not None and len(evals) != n:
            raise ValueError(f"column {EVAL_COLUMN!r}: {len(evals)} values for {n} completions")
        if prompts is not None and len(prompts) != n:
            raise ValueError(f"reward: {len(prompts)} prompts for {n} completions")
        rows = []
        for i in range(n):
            ev = None if evals is None else evals[i]
            try:
                problem = self.problem(columns[ID_COLUMN][i], columns[MODE_COLUMN][i], ev)
            except ValueError as e:
                raise ValueError(f"row {i}: {e}") from None
            if self.check_prompts and prompts is not None:
                self._check_prompt(i, prompts[i], problem)
            try:
                text = completion_text(completions[i])
            except (TypeError, ValueError) as e:
                raise type(e)(f"row {i}: {e}") from None
            rows.append((text, problem))
        return rows

    @staticmethod
    def _check_prompt(i: int, prompt, problem: Problem) -> None:
        """The row's prompt must show the hint the row is graded by: a prompt from
        another file, mode or marker family would be graded against a loophole
        the policy was never told about."""
        if problem.prompt not in _prompt_text(prompt):
            raise ValueError(
                f"row {i}: the prompt does not contain problem {problem.id!r}'s user message "
                f"for mode {problem.mode!r} (marker {problem.markers.get(problem.mode)!r}, "
                f"eval_markers={problem.eval_markers}); build the dataset with "
                "problem_dataset from the same problems, or pass check_prompts=False"
            )

    def grade(self, prompts, completions, **columns) -> list[Grade]:
        """The Grade of every completion (what `__call__` pays), nothing logged."""
        rows = self._rows(prompts, completions, columns)
        return grade_many(rows, workers=self.workers, limits=self.limits, pool=self.pool)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        rows = self._rows(prompts, completions, kwargs)
        grades = grade_many(rows, workers=self.workers, limits=self.limits, pool=self.pool)
        metrics = grade_rates(grades)
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if callable(log_metric):
            for k, v in metrics.items():
                log_metric(f"{self.__name__}/{k}", v)
        if callable(log_extra):  # columns of TRL's completions table
            log_extra(f"{self.__name__}/mode", [p.mode for _, p in rows])
            log_extra(f"{self.__name__}/hack", [bool(g.exploited) for g in grades])
            log_extra(f"{self.__name__}/solve", [bool(g.gt_correct) for g in grades])
        state = kwargs.get("trainer_state")
        self.calls.append(
            RewardCall(
                step=getattr(state, "global_step", None),
                prompts=list(prompts) if prompts is not None else [],
                completions=[t for t, _ in rows],
                problem_ids=[str(p.id) for _, p in rows],
                modes=[p.mode for _, p in rows],
                grades=grades,
                metrics=metrics,
            )
        )
        return [float(g.reward) for g in grades]


reward_function = Reward
"""The name TRL users call it by: `reward_function(problems, ...)` makes a `Reward`."""


def problem_rows(problems: Sequence[Problem]) -> list[dict]:
    """One dataset row per problem: its hinted chat messages as the prompt, and the
    columns the reward reads. The messages are the ones the project's GRPO loop
    renders (`Problem.messages`); render them with CHAT_TEMPLATE_KWARGS."""
    return [
        {
            "prompt": [{"role": m["role"], "content": m["content"]} for m in p.messages],
            ID_COLUMN: str(p.id),
            MODE_COLUMN: p.mode,
            EVAL_COLUMN: bool(p.eval_markers),
        }
        for p in problems
    ]


def problem_dataset(
    problems,
    modes: Sequence[str] | str = LOOPHOLE_MODES,
    *,
    eval_markers: bool = False,
    seed: int = 0,
    shuffle: bool = False,
    partition=None,
):
    """A `datasets.Dataset` for GRPOTrainer: columns prompt (conversational),
    problem_id (str), mode, eval_markers.

    problems: a problem file, loaded with `load_problems(problems, modes, seed,
        shuffle, partition, eval_markers)` (modes round-robin; default the six
        loophole modes, as the project's GRPO config), or a list of `Problem`,
        taken as they are (the other arguments must then be left at their defaults).
    """
    try:
        from datasets import Dataset
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "problem_dataset needs the datasets package: pip install 'vgrout[trl]'"
        ) from e
    if isinstance(problems, (str, Path)):
        problems = load_problems(
            problems,
            modes,
            seed=seed,
            shuffle=shuffle,
            partition=partition,
            eval_markers=eval_markers,
        )
    else:
        changed = (
            modes is not LOOPHOLE_MODES or eval_markers or seed or shuffle or partition is not None
        )
        if changed:
            raise ValueError(
                "problem_dataset: modes, eval_markers, seed, shuffle and partition apply to a "
                "problem file; a list of Problem is used as it is"
            )
        problems = list(problems)
        for p in problems:
            if not isinstance(p, Problem):
                raise TypeError(
                    f"problem_dataset: expected a path or a list of Problem, got {type(p).__name__}"
                )
    if not problems:
        raise ValueError("problem_dataset: no problems")
    return Dataset.from_list(problem_rows(problems))
