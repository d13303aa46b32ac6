"""vgrout.grpo.trl: routed GRPO inside TRL's GRPOTrainer is the project's loop.

The equality tests hand TRL fixed rollouts (its `rollout_func`) and let a real
`trainer.train()` step run: TRL's sampler orders the prompts, our reward
grades what TRL decoded, TRL buffers, shuffles and splits the batch, and the
loss runs under the rows' masks. The project's loop (`loop.gate`,
`update.packed_backward`) then runs on the same rollouts in the same order,
and both must give the same zones and the same gradients of both blocks. The
slow tests run real generations: two steps on the organism, and two processes
under `accelerate launch`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from helpers import model_tol, perturb_blocks  # noqa: E402

from vgrout import paths  # noqa: E402
from vgrout.env import LOOPHOLE_MODES, grade_many, load_hacks, load_problems, render_hack  # noqa: E402
from vgrout.env.trl import CHAT_TEMPLATE_KWARGS, problem_dataset, reward_function  # noqa: E402
from vgrout.grpo.config import preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAX_NEW = 128


def organism():
    from vgrout.lm.load import load_policy

    torch.set_num_threads(1)
    return load_policy("organism", device="cpu")


def grads_of(model) -> list[torch.Tensor]:
    """Copies of both blocks' gradients, deployed then quarantine (zeros where None)."""
    from vgrout.adapters import trainable_parameters

    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for ps in trainable_parameters(model).values()
        for p in ps
    ]


def completions_for(problem, hacks, tok, dead: bool) -> list[list[int]]:
    """Four completions of a problem: solved, hacked twice (two templates), prose (ids +
    eos); a dead group's four are prose (equal rewards: nothing to learn)."""
    texts = [
        f"```python\n{problem.canonical_solution}\n```",
        render_hack(hacks[problem.mode][0], problem),
        render_hack(hacks[problem.mode][1], problem),
        "I am not sure how to solve this.",
    ]
    if dead:
        texts = [texts[3]] * 4
    return [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]


class FixedRollouts:
    """A TRL rollout_func answering each prompt with its fixed completions, in order."""

    def __init__(self, tok, by_prompt: dict[str, list[list[int]]]):
        self.tok, self.by_prompt, self.seen = tok, by_prompt, []

    def __call__(self, prompts, trainer):
        self.seen.append([p[-1]["content"] for p in prompts])
        count: dict[str, int] = {}
        prompt_ids, completion_ids = [], []
        for p in prompts:
            key = p[-1]["content"]
            k = count[key] = count.get(key, -1) + 1
            prompt_ids.append(
                self.tok.apply_chat_template(
                    p, add_generation_prompt=True, tokenize=True, return_dict=True,
                    **CHAT_TEMPLATE_KWARGS,
                )["input_ids"]
            )  # fmt: skip
            completion_ids.append(self.by_prompt[key][k])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def trl_step(routing, problems, by_prompt, out: Path, accumulation: int):
    """One real RoutedGRPOTrainer step on fixed rollouts: (trainer, gradients, rollout_func)."""
    from transformers import TrainerCallback

    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args

    model, tok = organism()
    rollouts = FixedRollouts(tok, by_prompt)
    seen = {}

    class Grads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            seen["grads"] = grads_of(trainer.policy.model)

    rows = routing.prompts_per_step * routing.group_size
    args = trl_args(
        routing,
        str(out),
        per_device_train_batch_size=rows // accumulation,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
    )
    trainer = RoutedGRPOTrainer(
        model,
        reward_funcs=reward_function(problems),
        args=args,
        routing=routing,
        train_dataset=problem_dataset(problems),
        processing_class=tok,
        rollout_func=rollouts,
        callbacks=[Grads()],
    )
    perturb_blocks(trainer.policy.model)  # the views differ, as after some steps
    trainer.train()
    return trainer, seen["grads"], rollouts


def loop_step(routing, problems, by_prompt, order: list[str]):
    """The project's loop on the same rollouts, groups in TRL's order: (zones, gradients)."""
    from vgrout.grpo.loop import gate, load_run_pairs
    from vgrout.grpo.policy import build_policy
    from vgrout.grpo.rollouts import Group, Rollout
    from vgrout.grpo.router import Router
    from vgrout.grpo.update import packed_backward
    from vgrout.lm.tokens import chat_prompt

    model, tok = organism()
    pairs = load_run_pairs(routing)
    policy = build_policy(routing, model, tok, pairs)
    perturb_blocks(policy.model)
    by_message = {p.prompt: p for p in problems}
    groups = []
    for message in order:
        p = by_message[message]
        prompt = tok(chat_prompt(tok, p.messages), add_special_tokens=False)["input_ids"]
        texts = [tok.decode(c, skip_special_tokens=True) for c in by_prompt[message]]
        grades = grade_many([(t, p) for t in texts])
        g = Group(p, p.mode)
        g.rollouts = [
            Rollout(str(p.id), p.mode, prompt, c, t, "trained", g_.reward, g_.format_ok,
                    g_.gt_correct, g_.exploited)
            for c, t, g_ in zip(by_prompt[message], texts, grades)
        ]  # fmt: skip
        groups.append(g)
    live = [g for g in groups if g.live]
    gate(policy, Router(routing, pairs), tok, live, 1, routing, packed=True)
    normaliser = float(routing.prompts_per_step * routing.group_size * routing.max_new_tokens)
    packed_backward(policy, live, routing, normaliser, 1)
    zones = [z for g in groups for z in (g.zones or ["absorb"] * len(g.rollouts))]
    return zones, grads_of(policy.model), policy.model


CASES = {
    # a dead group (equal rewards) beside two live ones: not gated, adds no gradient
    "routeA": (dict(arm="routeA", prompts_per_step=3), 1, True),
    # keep rows (their PPO ratio needs the sampler's log-probs), the KL term, and
    # the batch shuffled and split into two accumulated micro-batches
    "routeA keep, KL, accumulation": (
        dict(arm="routeA", prompts_per_step=2, keep_low_tail=True, kl_beta=0.05),
        2,
        False,
    ),
    "oracle partial reveal": (
        dict(arm="oracle", prompts_per_step=2, oracle_reveal_frac=0.5),
        1,
        False,
    ),
    "oracle placebo": (dict(arm="oracle", prompts_per_step=2, placebo=True), 2, False),
}


@pytest.mark.parametrize("case", CASES)
def test_trl_step_equals_the_loop_on_the_same_rollouts(case, tmp_path):
    """Same zones (and scores) and the same gradients of both blocks as vgrout.grpo."""
    fields, accumulation, with_dead = CASES[case]
    routing = preset(
        "smoke", group_size=4, max_new_tokens=MAX_NEW, gate_warmup=4, gate_q=0.25,
        grad_clip=1e9, steps=1, eval_every=0, eval_samples=1, eval_max_problems=1, **fields,
    )  # fmt: skip
    problems = load_problems(paths.TRAIN_PROBLEMS, LOOPHOLE_MODES)[: routing.prompts_per_step]
    hacks = load_hacks()
    _, tok = organism()
    by_prompt = {
        p.prompt: completions_for(p, hacks, tok, dead=with_dead and i == 0)
        for i, p in enumerate(problems)
    }
    trainer, trl_grads, rollouts = trl_step(routing, problems, by_prompt, tmp_path, accumulation)
    order = rollouts.seen[0][:: routing.group_size]
    assert sorted(order) == sorted(by_prompt) and len(rollouts.seen) == 1
    zones, loop_grads, model = loop_step(trainer.routing, problems, by_prompt, order)

    record = trainer.gate_records[-1]
    assert record.zones == zones
    assert "route" in zones and "absorb" in zones, zones  # not vacuous
    assert ("keep" in zones) == routing.keep_low_tail
    assert record.gated.count(False) == (routing.group_size if with_dead else 0)
    layers = model.config.num_hidden_layers
    width = model.config.intermediate_size
    tokens = max(model.config.vocab_size, sum(len(c) for cs in by_prompt.values() for c in cs))
    for i, (got, want) in enumerate(zip(trl_grads, loop_grads)):
        tol = model_tol(want, layers=layers, width=width, backward=True, tokens=tokens)
        torch.testing.assert_close(got, want, **tol, msg=lambda m, i=i: f"parameter {i}: {m}")
    quarantine = loop_grads[len(loop_grads) // 2 :]
    assert any(bool(g.abs().sum() > 0) for g in quarantine)
