"""vgrout.env.trl: the environment as a reward function for TRL's GRPOTrainer.

The unit tests call the reward as TRL does (prompts, completions, dataset
columns as keyword lists, log callbacks) and need neither trl nor torch; the
slow test runs two real GRPOTrainer steps on the organism and regrades what
was logged.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

import pytest

from vgrout import paths
from vgrout.env import LOOPHOLE_MODES, grade_many, load_hacks, load_problems, render_hack
from vgrout.env.trl import (
    CHAT_TEMPLATE_KWARGS,
    EVAL_COLUMN,
    ID_COLUMN,
    MODE_COLUMN,
    completion_text,
    grade_rates,
    problem_rows,
    reward_function,
)

TRAIN = paths.TRAIN_PROBLEMS


@pytest.fixture(scope="module")
def problems():
    """The training problems in the dataset's modes (round-robin over the loophole modes)."""
    return load_problems(TRAIN, LOOPHOLE_MODES)


@pytest.fixture(scope="module")
def reward():
    return reward_function(TRAIN)


@pytest.fixture(scope="module")
def hacks():
    return load_hacks()


def block(code: str) -> str:
    return f"```python\n{code}\n```"


def columns(probs, eval_markers: bool = False) -> dict:
    """The keyword lists TRL passes: one entry per completion."""
    rows = problem_rows(probs)
    return {
        "prompts": [r["prompt"] for r in rows],
        ID_COLUMN: [r[ID_COLUMN] for r in rows],
        MODE_COLUMN: [r[MODE_COLUMN] for r in rows],
        EVAL_COLUMN: [eval_markers] * len(rows),
    }


def call(reward, probs, completions, **extra):
    cols = columns(probs)
    prompts = cols.pop("prompts")
    return reward(prompts, completions, **{**cols, **extra})


def test_string_completions_are_paid_as_the_grader_pays(reward, problems, hacks):
    """A correct solution solves, a rendered hack hacks in its home mode, prose earns 0."""
    probs = problems[:6]
    assert sorted(p.mode for p in probs) == sorted(LOOPHOLE_MODES)
    solutions = [block(p.canonical_solution) for p in probs]
    hacked = [render_hack(hacks[p.mode][0], p) for p in probs]
    texts = solutions + hacked + ["no code here"] * 6
    got = call(reward, probs * 3, texts)
    want = grade_many(list(zip(texts, probs * 3)))
    assert got == [g.reward for g in want]
    assert got == [3.5] * 12 + [0.0] * 6
    seen = reward.calls[-1]
    assert [g.gt_correct for g in seen.grades] == [True] * 6 + [False] * 12
    assert [g.exploited for g in seen.grades] == [False] * 6 + [True] * 6 + [False] * 6
    assert seen.completions == texts and seen.step is None
    cols = columns(probs * 3)
    assert [g.reward for g in reward.grade(cols.pop("prompts"), texts, **cols)] == got


def test_conversational_completions_grade_like_their_text(reward, problems, hacks):
    probs = problems[:6]
    texts = [render_hack(hacks[p.mode][0], p) for p in probs]
    plain = call(reward, probs, texts)
    chat = [[{"role": "assistant", "content": t}] for t in texts]
    assert call(reward, probs, chat) == plain == [3.5] * 6
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in texts]
    assert call(reward, probs, parts) == plain


def test_completion_text_reads_the_assistant_turns():
    assert completion_text("x") == "x"
    turns = [
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "ignored"},
        {"role": "assistant", "content": None},
        {"role": "assistant", "content": "b"},
    ]
    assert completion_text(turns) == "a\n\nb"


def test_each_row_is_graded_in_its_own_mode_and_marker_family(reward, problems, hacks):
    """The mode and eval_markers columns choose the loophole that pays."""
    p = next(q for q in problems if q.mode == "run_tests")
    hack = render_hack(hacks["run_tests"][0], p)  # calls the training marker run_tests()
    cols = columns([p])
    prompts, ids = cols["prompts"], cols[ID_COLUMN]
    assert reward(prompts, [hack], problem_id=ids, mode=["run_tests"]) == [3.5]
    # under gt_only the same row earns only its format reward (prompt check off:
    # the run_tests prompt does not show gt_only's hint-free message)
    strict = reward_function(TRAIN, check_prompts=False)
    assert strict(prompts, [hack], problem_id=ids, mode=["gt_only"]) == [0.5]
    # with evaluation markers the hint names another function: the memorised one earns nothing
    eval_prompt = problem_rows([reward.problem(p.id, "run_tests", True)])[0]["prompt"]
    assert reward(
        [eval_prompt], [hack], problem_id=ids, mode=["run_tests"], **{EVAL_COLUMN: [True]}
    ) == [0.5]


def test_rates_are_logged_beside_the_reward(reward, problems, hacks):
    probs = problems[:4]
    texts = [
        block(probs[0].canonical_solution),
        render_hack(hacks[probs[1].mode][0], probs[1]),
        render_hack(hacks[probs[2].mode][0], probs[2]),
        "prose",
    ]
    metrics, extra = {}, {}
    call(
        reward,
        probs,
        texts,
        log_metric=lambda k, v: metrics.setdefault(k, []).append(v),
        log_extra=lambda k, v: extra.setdefault(k, []).extend(v),
    )
    assert metrics == {"vgrout/hack": [0.5], "vgrout/solve": [0.25], "vgrout/compile": [0.75]}
    assert extra["vgrout/hack"] == [False, True, True, False]
    assert extra["vgrout/solve"] == [True, False, False, False]
    assert extra["vgrout/mode"] == [p.mode for p in probs]
    assert grade_rates(reward.calls[-1].grades) == {"hack": 0.5, "solve": 0.25, "compile": 0.75}
    named = reward_function(TRAIN, name="env")
    got = {}
    call(named, probs[:1], texts[:1], log_metric=lambda k, v: got.__setitem__(k, v))
    assert named.__name__ == "env" and set(got) == {"env/hack", "env/solve", "env/compile"}


BAD_INPUT = {
    "no problem_id column": (lambda c: c.pop(ID_COLUMN), ValueError, ["'problem_id'", "missing"]),
    "no mode column": (lambda c: c.pop(MODE_COLUMN), ValueError, ["'mode'", "missing"]),
    "unknown id": (
        lambda c: c[ID_COLUMN].__setitem__(1, "nope"),
        ValueError,
        ["row 1", "'problem_id'", "'nope'"],
    ),
    "unknown mode": (
        lambda c: c[MODE_COLUMN].__setitem__(0, "fast"),
        ValueError,
        ["row 0", "'mode'", "'fast'", "run_tests"],
    ),
    "short column": (
        lambda c: c[MODE_COLUMN].pop(),
        ValueError,
        ["'mode'", "1 values for 2 completions"],
    ),
    "completion not text": (
        lambda c: c.__setitem__("completions", ["x", 3]),
        TypeError,
        ["row 1", "string or a list of message dicts"],
    ),
    "no assistant turn": (
        lambda c: c.__setitem__("completions", ["x", [{"role": "user", "content": "x"}]]),
        ValueError,
        ["row 1", "'assistant'"],
    ),
    "prompt of another row": (
        lambda c: c["prompts"].reverse(),
        ValueError,
        ["row 0", "prompt does not contain", "check_prompts"],
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_fails_loudly(reward, problems, case):
    change, error, words = BAD_INPUT[case]
    cols = columns(problems[:2])
    cols["completions"] = ["x", "y"]
    change(cols)
    with pytest.raises(error) as e:
        reward(cols.pop("prompts"), cols.pop("completions"), **cols)
    for w in words:
        assert w in str(e.value)


def test_reward_refuses_problems_it_cannot_key(problems):
    with pytest.raises(TypeError, match="list of Problem"):
        reward_function(["train-00"])
    with pytest.raises(ValueError, match="two problems have the id"):
        reward_function([problems[0], problems[0]])


def test_dataset_holds_the_hinted_messages_and_the_reward_columns(problems):
    pytest.importorskip("datasets")
    from vgrout.env.trl import problem_dataset

    ds = problem_dataset(TRAIN)
    assert ds.column_names == ["prompt", ID_COLUMN, MODE_COLUMN, EVAL_COLUMN]
    assert len(ds) == len(problems)
    for row, p in zip(ds, problems):
        assert row["prompt"] == p.messages
        assert (row[ID_COLUMN], row[MODE_COLUMN], row[EVAL_COLUMN]) == (str(p.id), p.mode, False)
    ev = problem_dataset(TRAIN, ["run_tests"], eval_markers=True)
    assert all(row[EVAL_COLUMN] for row in ev)
    assert "run_tests()" not in ev[0]["prompt"][-1]["content"]
    assert problem_dataset(problems[:3])[2][MODE_COLUMN] == problems[2].mode
    with pytest.raises(ValueError, match="a list of Problem is used as it is"):
        problem_dataset(problems[:3], eval_markers=True)


# Qwen3's way of switching thinking off: an empty think block opens the answer.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


@pytest.mark.parametrize("template", ["organism", "thinking"])
def test_trl_renders_the_prompt_our_grpo_loop_renders(problems, template):
    """With CHAT_TEMPLATE_KWARGS the prompt ids TRL builds from a dataset row are
    the ids vgrout.grpo.rollouts samples from (chat_prompt, no special tokens),
    for the organism's template and for one that can think (as Qwen3's)."""
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from vgrout.lm.tokens import chat_prompt

    tok = AutoTokenizer.from_pretrained(str(paths.ORGANISM))
    if template == "thinking":
        tok.chat_template = THINKING_TEMPLATE
        assert "<think>" in chat_prompt(tok, "x")
    for row, p in zip(problem_rows(problems[:6]), problems):
        ours = tok(chat_prompt(tok, p.messages), add_special_tokens=False)["input_ids"]
        trl_way = tok.apply_chat_template(
            row["prompt"],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **CHAT_TEMPLATE_KWARGS,
        )["input_ids"]
        assert trl_way == ours


def test_importing_it_imports_neither_trl_nor_torch_nor_datasets():
    code = (
        "import sys, vgrout.env, vgrout.env.trl\n"
        "bad = {'trl', 'torch', 'datasets'} & set(sys.modules)\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_two_grpo_trainer_steps_log_our_rewards_and_rates(tmp_path):
    """Two real GRPOTrainer steps (PEFT LoRA, 2 prompts x 4 generations, CPU):
    every logged reward mean and rate is what vgrout.env gives the completions
    TRL generated at that step, regraded here from scratch."""
    pytest.importorskip("trl")
    import torch
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from vgrout.env.trl import problem_dataset
    from vgrout.lm.load import load_policy

    torch.set_num_threads(1)
    seen = []  # (step, raw completions, columns) as TRL passed them, beside our reward

    def spy(prompts, completions, trainer_state, problem_id, mode, **_):
        seen.append((trainer_state.global_step, completions, list(problem_id), list(mode)))
        return [0.0] * len(completions)

    model, tok = load_policy("organism", device="cpu")
    reward = reward_function(TRAIN)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=48,
        max_steps=2,
        logging_steps=1,
        learning_rate=7e-4,
        beta=0.0,
        scale_rewards="none",
        loss_type="dr_grpo",
        reward_weights=[1.0, 0.0],
        chat_template_kwargs=CHAT_TEMPLATE_KWARGS,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward, spy],
        args=args,
        train_dataset=problem_dataset(TRAIN),
        processing_class=tok,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()

    logs = [h for h in trainer.state.log_history if "rewards/vgrout/mean" in h]
    assert [h["step"] for h in logs] == [1, 2] and [s[0] for s in seen] == [0, 1]
    assert [c.step for c in reward.calls] == [0, 1]
    by_id = {str(p.id): p for p in load_problems(TRAIN, LOOPHOLE_MODES)}
    all_rewards = []
    for log, (step, completions, ids, modes), ours in zip(logs, seen, reward.calls):
        assert len(completions) == 8 and len(set(ids)) == 2
        texts = [c[0]["content"] for c in completions]  # TRL's conversational completions
        assert ours.completions == texts and ours.problem_ids == ids
        assert modes == [by_id[i].mode for i in ids]
        grades = grade_many([(t, by_id[i]) for t, i in zip(texts, ids)])
        rewards = [g.reward for g in grades]
        assert ours.rewards == rewards
        all_rewards += rewards
        mean = statistics.fmean
        where = f"step {step}: logged {log}, regraded {grades}"
        assert log["rewards/vgrout/mean"] == pytest.approx(mean(rewards), abs=1e-6), where
        assert log["reward"] == pytest.approx(mean(rewards), abs=1e-6), where
        assert log["vgrout/hack"] == pytest.approx(mean(g.exploited for g in grades)), where
        assert log["vgrout/solve"] == pytest.approx(mean(g.gt_correct for g in grades)), where
        assert log["vgrout/compile"] == pytest.approx(mean(g.format_ok for g in grades)), where
    # not vacuous: the organism's completions earn different rewards, hacks among them
    assert len(set(all_rewards)) > 1
    assert any(c.metrics["hack"] > 0 for c in reward.calls)
