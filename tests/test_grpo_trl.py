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

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from helpers import model_tol, perturb_blocks  # noqa: E402
from trl_fixtures import completions_for, grads_of, organism  # noqa: E402

from vgrout import paths  # noqa: E402
from vgrout.env import LOOPHOLE_MODES, grade_many, load_hacks, load_problems  # noqa: E402
from vgrout.env.trl import CHAT_TEMPLATE_KWARGS, problem_dataset, reward_function  # noqa: E402
from vgrout.grpo.presets import preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAX_NEW = 128


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


def trl_step(routing, problems, by_prompt, out: Path, accumulation: int, checkpointing: bool):
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
        gradient_checkpointing=checkpointing,
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
    from vgrout.grpo.gate import gate
    from vgrout.grpo.loop import load_run_pairs
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
    gated, _ = gate(policy, Router(routing, pairs), tok, live, 1, routing, packed=True)
    normaliser = float(routing.prompts_per_step * routing.group_size * routing.max_new_tokens)
    packed_backward(policy, gated, routing, normaliser, 1)
    by_group = {id(r.group): r.zones for r in gated}
    zones = [z for g in groups for z in by_group.get(id(g), ["absorb"] * len(g.rollouts))]
    return zones, grads_of(policy.model), policy.model


CASES = {  # routing fields, micro-batches a step, gradient checkpointing, a dead group
    # a dead group (equal rewards) beside two live ones: not gated, adds no gradient;
    # gradient checkpointing re-runs the forward in the backward, under the same masks
    "routeA": (dict(arm="routeA", prompts_per_step=3), 1, True, True),
    # keep rows (their PPO ratio needs the sampler's log-probs), the KL term, and
    # the batch shuffled and split into two accumulated micro-batches
    "routeA keep, KL, accumulation": (
        dict(arm="routeA", prompts_per_step=2, keep_low_tail=True, kl_beta=0.05),
        2,
        False,
        False,
    ),
    "oracle partial reveal": (
        dict(arm="oracle", prompts_per_step=2, oracle_reveal_frac=0.5),
        1,
        False,
        False,
    ),
    "oracle placebo": (dict(arm="oracle", prompts_per_step=2, placebo=True), 2, False, False),
    "routeA placebo": (dict(arm="routeA", prompts_per_step=2, placebo=True), 1, False, False),
    "absorb": (dict(arm="absorb", prompts_per_step=2, kl_beta=0.05), 1, False, False),
}
SLOW_CASES = ("oracle placebo", "routeA placebo", "absorb")


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES]
)
def test_trl_step_equals_the_loop_on_the_same_rollouts(case, tmp_path):
    """Same zones (and scores) and the same gradients of both blocks as vgrout.grpo."""
    fields, accumulation, checkpointing, with_dead = CASES[case]
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
    trainer, trl_grads, rollouts = trl_step(
        routing, problems, by_prompt, tmp_path, accumulation, checkpointing
    )
    assert trainer.policy.model.get_base_model().is_activation_checkpointing == checkpointing
    order = rollouts.seen[0][:: routing.group_size]
    assert sorted(order) == sorted(by_prompt) and len(rollouts.seen) == 1
    zones, loop_grads, model = loop_step(trainer.routing, problems, by_prompt, order)

    record = trainer.gate_records[-1]
    assert record.zones == zones
    gated = {"route", "absorb"} | ({"keep"} if routing.keep_low_tail else set())
    assert set(zones) == ({"absorb"} if routing.arm == "absorb" else gated), zones
    assert record.gated.count(False) == (routing.group_size if with_dead else 0)
    layers = model.config.num_hidden_layers
    width = model.config.intermediate_size
    tokens = max(model.config.vocab_size, sum(len(c) for cs in by_prompt.values() for c in cs))
    for i, (got, want) in enumerate(zip(trl_grads, loop_grads)):
        tol = model_tol(want, layers=layers, width=width, backward=True, tokens=tokens)
        torch.testing.assert_close(got, want, **tol, msg=lambda m, i=i: f"parameter {i}: {m}")
    quarantine = loop_grads[len(loop_grads) // 2 :]
    assert any(bool(g.abs().sum() > 0) for g in quarantine)


def zone_of(m: float, d: float) -> str:
    from vgrout.grpo.zones import ZONE_MASKS

    return next(z for z, md in ZONE_MASKS.items() if md == (m, d))


@pytest.mark.slow
def test_two_trainer_steps_on_the_organism(tmp_path):
    """Two real steps (TRL's generation on the merged trained view, our reward, routeA,
    a batch split into two accumulated micro-batches): every trained row carries the
    zone the gate gave it; each block is clipped on its own; the routing metrics,
    both views' evaluations and the exported deployed block are what they claim."""
    from peft import PeftModel
    from transformers import TrainerCallback

    from vgrout.adapters import ablate_quarantine, trainable_parameters
    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args

    class Spy(RoutedGRPOTrainer):
        """Records each row's masks where the gate set them and where the loss read them."""

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            self.generated.append(
                {k: out[k].clone() for k in ("completion_ids", "route_m", "route_d")}
            )
            return out

        def _compute_loss(self, model, inputs):
            self.trained.append(
                {k: inputs[k].clone() for k in ("completion_ids", "route_m", "route_d")}
            )
            return super()._compute_loss(model, inputs)

    class Clipped(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            norms.append({b: float(torch.cat([p.grad.flatten() for p in ps]).norm())
                          for b, ps in trainable_parameters(trainer.policy.model).items()})  # fmt: skip

    routing = preset(
        "smoke", arm="routeA", steps=2, group_size=4, prompts_per_step=2, max_new_tokens=48,
        gate_warmup=4, grad_clip=0.05, eval_every=1, eval_samples=1, eval_max_problems=2,
    )  # fmt: skip
    model, tok = organism()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    norms = []
    train = paths.repo_path(routing.train_problems)
    trainer = Spy(
        model,
        reward_funcs=reward_function(train),
        args=trl_args(
            routing, str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2
        ),  # fmt: skip
        routing=routing,
        train_dataset=problem_dataset(train, routing.modes),
        processing_class=tok,
        callbacks=[Clipped()],
    )
    trainer.generated, trainer.trained = [], []
    start = [p.detach().clone() for p in trainer.policy.all_params()]
    trainer.train()

    # every row trains under the masks of the zone the gate gave it
    assert len(trainer.generated) == 2 and len(trainer.trained) == 4
    for record, gen in zip(trainer.gate_records, trainer.generated):
        assert [
            zone_of(m, d) for m, d in zip(gen["route_m"].tolist(), gen["route_d"].tolist())
        ] == record.zones
    zone = {tuple(c.tolist()): (m, d) for gen in trainer.generated
            for c, m, d in zip(gen["completion_ids"], gen["route_m"], gen["route_d"])}  # fmt: skip
    order = []
    for batch in trainer.trained:
        for c, m, d in zip(batch["completion_ids"], batch["route_m"], batch["route_d"]):
            assert zone[tuple(c.tolist())] == (m, d)
            order.append(tuple(c.tolist()))
    assert order != list(zone)  # the batches were shuffled: the check above is not vacuous
    assert any("route" in r.zones for r in trainer.gate_records)

    # the routing metrics in TRL's log are the gate's
    logs = [h for h in trainer.state.log_history if "routing/zone_route" in h]
    assert [h["step"] for h in logs] == [1, 2]
    for log, record in zip(logs, trainer.gate_records):
        gated = [z for z, g in zip(record.zones, record.gated) if g]
        assert log["routing/zone_route"] == pytest.approx(gated.count("route") / len(gated))
        assert log["routing/live_groups"] == sum(record.gated) / routing.group_size

    # each block clipped to grad_clip on its own, from the pre-clip norms logged
    assert len(norms) == 2
    for log, after in zip(logs, norms):
        for block in ("deployed", "quarantine"):
            before = log[f"routing/grad_norm_{block}"]
            assert after[block] == pytest.approx(min(before, routing.grad_clip), rel=1e-5)

    # only the blocks trained; the base and the frozen anchors did not move
    for n, p in trainer.policy.model.get_base_model().named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n.replace(".base_layer", "")]), n
    assert all(not torch.equal(p, p0) for p, p0 in zip(trainer.policy.all_params(), start))

    # both views on both splits at steps 0, 1 and 2 (the last with final_eval_samples)
    rows = trainer.eval_rows
    assert sorted({(r["step"], r["split"], r["view"]) for r in rows}) == sorted(
        (s, sp, v) for s in (0, 1, 2) for sp in ("test", "iid") for v in ("trained", "deployed")
    )
    assert all(r["ships"] == (r["view"] == "deployed") for r in rows)
    lines = (tmp_path / "routed_eval.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(rows))

    with pytest.raises(ValueError, match="use_vllm"):
        trainer.sync_vllm("deployed")

    # the exported adapter on a fresh base is the deployed view
    fresh, _ = organism()
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "deployed_adapter")).eval()
    ids = torch.tensor([trainer.generated[0]["completion_ids"][0].tolist()])
    with torch.no_grad(), ablate_quarantine(trainer.policy.model):
        want = trainer.policy.model(input_ids=ids).logits
    got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, **model_tol(want, layers=4, width=256, tokens=1000))


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_agree(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo), a group split over them: every
    process routes every row alike (zones, score buffer, direction) and ends with the
    same adapters."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    cmd = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", str(ROOT / "tests" / "trl_two_ranks.py"), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["processes"] == r1["processes"] == 2
    assert r0["zones"] == r1["zones"] and r0["gated"] == r1["gated"]
    # not vacuous: some group was gated, one of them lying on both processes (rows 4-7)
    assert any(g[4] for g in r0["gated"]) and any("route" in z for z in r0["zones"])
    for key in ("feats", "born", "seen"):
        a, b = r0["router"]["buffer"][key], r1["router"]["buffer"][key]
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b
    assert torch.equal(r0["router"]["direction"], r1["router"]["direction"])
    for block in ("deployed", "quarantine"):
        for a, b in zip(r0["adapters"][block], r1["adapters"][block]):
            assert torch.equal(a, b)
