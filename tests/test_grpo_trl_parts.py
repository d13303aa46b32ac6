"""vgrout.grpo.trl's parts: split groups, the vLLM views, configs, refusals, TRL versions.

Each piece in isolation, where tests/test_grpo_trl.py runs the whole trainer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from helpers import model_tol, perturb_blocks  # noqa: E402
from trl_fixtures import completions_for, organism, routed_organism  # noqa: E402

from vgrout import paths  # noqa: E402
from vgrout.env import LOOPHOLE_MODES, load_hacks, load_problems  # noqa: E402
from vgrout.env.trl import reward_function  # noqa: E402
from vgrout.grpo.presets import preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_a_group_split_over_processes_gets_one_process_features():
    """Rows of a group lying on two processes get the features one process would give
    them; rows of a dead group stay zero (they are not gated)."""
    from vgrout.grpo.trl.gate import local_features
    from vgrout.lm.tokens import chat_prompt

    routing, policy, tok = routed_organism(prompts_per_step=3)
    problems = load_problems(paths.TRAIN_PROBLEMS, LOOPHOLE_MODES)[:3]
    hacks = load_hacks()
    prompts, completions = [], []
    for p in problems:
        ids = tok(chat_prompt(tok, p.messages), add_special_tokens=False)["input_ids"]
        for c in completions_for(p, hacks, tok, dead=False):
            prompts.append(ids), completions.append(c)
    live = [True, True, False]
    whole = local_features(policy, tok, (prompts, completions), 0, live, routing, packed=True)
    halves = torch.cat(
        [
            local_features(policy, tok, (prompts[:6], completions[:6]), 0, live, routing, True),
            local_features(policy, tok, (prompts[6:], completions[6:]), 6, live, routing, True),
        ]
    )
    torch.testing.assert_close(halves, whole, **model_tol(whole, layers=4, width=256))
    assert bool((whole[8:] == 0).all()) and bool((whole[:8].abs().sum((1, 2)) > 0).all())


class Engine:
    """Stands in for vLLM's colocated model: `load_weights` copies named weights into a
    plain organism, which is what a vLLM engine holds."""

    def __init__(self):
        self.model, _ = organism()
        self.params = dict(self.model.named_parameters())
        self.received = []

    def load_weights(self, named):
        for name, weight in named:
            self.received.append(name)
            with torch.no_grad():
                self.params[name].copy_(weight)


def stand_in_generation(engine: Engine):
    """TRL's VLLMGeneration in colocate mode, its engine replaced (vLLM needs a GPU)."""
    from types import SimpleNamespace

    from trl.generation.vllm_generation import VLLMGeneration

    gen = VLLMGeneration.__new__(VLLMGeneration)
    gen.mode, gen.enable_sleep_mode = "colocate", False
    gen.accelerator = SimpleNamespace(is_main_process=True)
    runner = SimpleNamespace(model=engine)
    gen.llm = SimpleNamespace(
        llm_engine=SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner))
        ),
        reset_prefix_cache=lambda: None,
    )
    return gen


def test_vllm_sync_pushes_each_view_as_whole_weights():
    """TRL's own sync_weights, with ViewSync's reader, gives a plain model each view of
    the routed one; the routed model's base weights are never written."""
    from vgrout.adapters import ablate_quarantine
    from vgrout.grpo.trl import ViewSync

    _, policy, _ = routed_organism()
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_" not in n}
    engine = Engine()
    sync = ViewSync(stand_in_generation(engine), policy.model)
    ids = torch.tensor([list(range(5, 60))])
    with torch.no_grad():
        trained = policy.model(input_ids=ids).logits
        with ablate_quarantine(policy.model):
            deployed = policy.model(input_ids=ids).logits
    assert (trained - deployed).abs().max() > 1e-2  # the views differ
    for view, want in (("trained", trained), ("deployed", deployed)):
        engine.received.clear()
        sync.push(view)
        assert sorted(engine.received) == sorted(engine.params)
        got = engine.model(input_ids=ids).logits.detach()
        torch.testing.assert_close(got, want, **model_tol(want, layers=4, width=256, tokens=1000))
        assert sync.view == "trained"  # later syncs push the trained view
    for n, p in policy.model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), n


def test_routing_fields_that_trl_owns_must_agree(tmp_path):
    from trl import GRPOConfig as TRLConfig

    from vgrout.grpo.config import GRPOConfig
    from vgrout.grpo.trl import routing_for, trl_args

    routing = preset("organism", arm="routeA")
    args = trl_args(routing, str(tmp_path))
    assert routing_for(routing, args) == routing.replace(kl_beta=0.0)  # all agree
    plain = TRLConfig(
        str(tmp_path), num_generations=8, max_completion_length=100, max_steps=50, bf16=False
    )
    with pytest.raises(ValueError) as e:
        routing_for(routing, plain)
    for word in (
        "lr=0.0007 but TRL's config gives 1e-06",
        "steps=100 but TRL's config gives 50",
        "trl_args",
    ):
        assert word in str(e.value)
    # fields left at their defaults take TRL's values
    mapped = routing_for(GRPOConfig(arm="routeA"), args)
    assert (mapped.group_size, mapped.lr, mapped.max_new_tokens) == (8, 7e-4, 100)


REFUSED = {
    "routeV": (dict(arm="routeV"), {}, {}, "arm='routeV'"),
    "deployed-view sampling": (dict(gen_deploy_frac=0.25), {}, {}, "gen_deploy_frac"),
    "hint-free share": (dict(unhackable_frac=0.25), {}, {}, "gt_only"),
    "decay toward zero": ({}, dict(weight_decay=0.1), {}, "weight_decay=0.1 (TRL)"),
    "truncation masks": ({}, dict(mask_truncated_completions=True), {}, "mask_truncated"),
    "peft_config": ({}, {}, dict(peft_config="lora"), "peft_config"),
    "oracle without labels": (dict(arm="oracle"), {}, dict(reward_funcs=[len]), "true hack labels"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_settings_are_refused_by_name(case, tmp_path):
    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args

    fields, trl_fields, kwargs, words = REFUSED[case]
    routing = preset("smoke", **fields)
    model, tok = organism()
    kwargs = {"reward_funcs": reward_function(paths.TRAIN_PROBLEMS), **kwargs}
    with pytest.raises(ValueError, match="cannot run this") as e:
        RoutedGRPOTrainer(
            model, args=trl_args(routing, str(tmp_path), **trl_fields), routing=routing,
            processing_class=tok, **kwargs,
        )  # fmt: skip
    assert words in str(e.value)


def test_engines_the_trainer_cannot_drive_are_refused_by_name(tmp_path):
    """DeepSpeed, FSDP, fp16 and the rest need machines or packages this test does not
    have to build TRL's config with them; `refusals` reads only the fields."""
    from vgrout.grpo.trl import trl_args
    from vgrout.grpo.trl.config import refusals

    args = trl_args(preset("smoke"), str(tmp_path))
    assert refusals(preset("smoke"), args) == []
    for field, value, words in (
        ("deepspeed", "ds.json", "deepspeed: the engine clips"),
        ("fsdp", "full_shard", "fsdp: the merged sampling views"),
        ("fp16", True, "fp16=True"),
        ("use_transformers_continuous_batching", True, "continuous_batching"),
        ("sync_ref_model", True, "sync_ref_model"),
    ):
        stub = SimpleNamespace(**{**vars(args), field: value})
        stub.deepspeed_plugin = None
        (line,) = refusals(preset("smoke"), stub)
        assert words in line


def test_a_model_with_adapters_is_refused(tmp_path):
    from peft import LoraConfig, get_peft_model

    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args

    routing = preset("smoke")
    model, tok = organism()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    for bad, words in ((peft, "bare base model"), ("Qwen/Qwen3-4B", "not a name")):
        with pytest.raises(ValueError, match=words):
            RoutedGRPOTrainer(bad, reward_funcs=reward_function(paths.TRAIN_PROBLEMS),
                              args=trl_args(routing, str(tmp_path)), routing=routing,
                              processing_class=tok)  # fmt: skip


def test_a_trl_outside_the_tested_range_is_refused(monkeypatch):
    from vgrout.grpo.trl import RoutedGRPOTrainer, compat

    compat.check_trl_version()  # the installed one is tested
    compat.check_trl_version("1.16.3")
    for version in ("1.15.2", "1.17.0", "2.0.0"):
        with pytest.raises(ImportError) as e:
            compat.check_trl_version(version)
        assert f"trl {version} is installed" in str(e.value)
        assert "pip install 'trl>=1.16.0,<1.17'" in str(e.value)
    monkeypatch.setattr(compat, "installed_trl", lambda: "1.18.0")
    with pytest.raises(ImportError, match="trl 1.18.0 is installed"):
        RoutedGRPOTrainer(None)


def test_every_hooked_trl_method_is_checked():
    """The installed TRL has every hook with the arguments used; a renamed method or
    changed arguments are named."""
    from vgrout.grpo.trl import compat

    compat.check_hooks()
    owners = compat.hook_owners()
    changed = type("GRPOTrainer", (owners["GRPOTrainer"],), {"_compute_loss": lambda self, x: 0})
    del_name = type("VLLMGeneration", (), {})
    with pytest.raises(RuntimeError) as e:
        compat.check_hooks({**owners, "GRPOTrainer": changed, "VLLMGeneration": del_name})
    assert "GRPOTrainer._compute_loss takes ('self', 'x')" in str(e.value)
    assert "VLLMGeneration.sync_weights is missing" in str(e.value)


def test_decay_pulls_both_blocks_toward_their_init():
    """After each optimizer step, p -= weight_decay * lr * (p - p_init), at the lr the step used."""
    from types import SimpleNamespace

    from vgrout.grpo.trl.callbacks import RoutedRun

    routing, policy, _ = routed_organism(weight_decay=0.5)
    trainer = SimpleNamespace(routing=routing, policy=policy)
    run = RoutedRun(trainer)
    init = [p.detach().clone() for p in policy.all_params()]
    perturb_blocks(policy.model, seed=5)
    moved = [p.detach().clone() for p in policy.all_params()]
    scheduler = SimpleNamespace(get_last_lr=lambda: [0.1])
    run.on_optimizer_step(None, None, None, lr_scheduler=scheduler)
    for p, p0, p1 in zip(policy.all_params(), init, moved):
        torch.testing.assert_close(p.detach(), p1 - 0.05 * (p1 - p0), atol=1e-7, rtol=0)


def test_the_core_library_does_not_import_trl():
    code = (
        "import sys, vgrout, vgrout.grpo, vgrout.grpo.loop, vgrout.grpo.config, vgrout.adapters,"
        " vgrout.env.trl, vgrout.train\n"
        "assert 'trl' not in sys.modules, 'trl was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
