"""The lean and fused decode loops against `model.generate` and the full-sequence forward.

Greedy ids must equal HF's exactly (prompts of different lengths, rows that
stop early), sampled steps must score every token with the logits the whole
sequence gives, the sampler must be seeded and draw the filtered
distribution, and n rows of one shared prompt must equal the prompt
repeated. Checked on a random tiny Qwen3 and on the organism.
"""

from __future__ import annotations

import math

import helpers
import pytest
import torch
from helpers import PAIRS, ByteTokenizer, perturb_blocks

from vgrout.lm import decode, fused, qwen3, sampling
from vgrout.lm.spec import SamplingSpec

torch.set_num_threads(1)

PAD = 0
LOOPS = {"lean": decode.decode, "fused": fused.decode}
"""Both in-place cache loops; every test named for "the loop" runs on each."""


def tiny_qwen3(seed: int = 0, dtype=torch.float32):
    """The tests' tiny Qwen3 with logits spread enough (init std 0.2) that greedy has no near-ties."""
    return helpers.tiny_qwen3(seed, dtype, initializer_range=0.2)


def tiny_prompts(lengths=(5, 11, 3, 8), seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 256, (k,), generator=g).tolist() for k in lengths]


@pytest.fixture(scope="module")
def organism():
    """(model, tokenizer, token ids of 4 training prompts of different lengths)."""
    from vgrout import paths
    from vgrout.env.problems import load_problems
    from vgrout.lm.load import load_policy
    from vgrout.lm.organism import OrganismRecipe
    from vgrout.lm.tokens import chat_prompt

    model, tok = load_policy("organism", device="cpu")
    problems = load_problems(paths.TRAIN_PROBLEMS, list(OrganismRecipe().modes))[:4]
    texts = [chat_prompt(tok, p.messages) for p in problems]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(i) for i in ids}) > 1, "prompts of different lengths"
    return model.eval(), tok, ids


def left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [rows, width], built here apart from decode.left_pad."""
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def cut(row: list[int], eos) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


@torch.no_grad()
def hf_greedy(model, prompts, steps: int, eos) -> list[list[int]]:
    ids, mask = left_padded(prompts)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=steps,
        eos_token_id=eos,
        pad_token_id=PAD,
    )
    return [cut(r, eos) for r in out[:, ids.shape[1] :].tolist()]


def lean(model, prompts, steps: int, eos, n: int = 1, loop="lean", **kw) -> list[list[int]]:
    """Decode with LOOPS[loop]; kw: SamplingSpec fields (temperature, top_k, top_p)."""
    spec = SamplingSpec(steps, **kw)
    d = LOOPS[loop](model, prompts, n, spec, eos if eos is not None else -1, PAD)
    return [cut(r, eos) for r in d.tokens.tolist()]


def early_eos(model, prompts, steps: int) -> int:
    """A token that greedy decoding emits early in some row and never in another.

    A random model has no real eos; stopping on this one makes rows end at
    different steps, and one row run to the limit.
    """
    free = hf_greedy(model, prompts, steps, None)
    for tok in free[0][2 : steps // 2]:
        if any(tok not in row for row in free[1:]):
            return tok
    raise AssertionError("no token stops one row early and leaves another running")


def stop_steps(rows: list[list[int]], eos: int) -> list[int | None]:
    return [r.index(eos) if eos in r else None for r in rows]


# (1) greedy ids equal model.generate's


@pytest.mark.parametrize("loop", LOOPS)
def test_greedy_matches_hf_generate_on_tiny_qwen3(loop):
    model, prompts, steps = tiny_qwen3(), tiny_prompts(), 24
    eos = early_eos(model, prompts, steps)
    want = hf_greedy(model, prompts, steps, eos)
    stops = stop_steps(want, eos)
    assert None in stops and any(s is not None and s < steps - 1 for s in stops)
    assert lean(model, prompts, steps, eos, loop=loop, temperature=0.0) == want


@pytest.mark.parametrize("loop", LOOPS)
def test_finished_rows_hold_pad_and_the_loop_ends_with_the_last_row(loop):
    model, prompts, steps = tiny_qwen3(), tiny_prompts(), 24
    eos = early_eos(model, prompts, steps)
    d = LOOPS[loop](model, prompts, 1, SamplingSpec(steps, temperature=0.0), eos, PAD).tokens
    stops = stop_steps(d.tolist(), eos)
    assert None in stops and d.shape[1] == steps
    for row, stop in zip(d, stops):
        if stop is not None:
            assert (row[stop + 1 :] == PAD).all()
    finishing = [p for p, s in zip(prompts, stops) if s is not None]
    short = LOOPS[loop](model, finishing, 1, SamplingSpec(steps, temperature=0.0), eos, PAD).tokens
    assert short.shape[1] == max(s for s in stops if s is not None) + 1


@pytest.mark.parametrize("loop", LOOPS)
def test_greedy_matches_hf_generate_on_organism(organism, loop):
    model, tok, prompts = organism
    steps, eos = 56, tok.eos_token_id
    want = hf_greedy(model, prompts, steps, eos)
    stops = stop_steps(want, eos)
    assert None in stops and any(s is not None for s in stops), stops
    assert lean(model, prompts, steps, eos, loop=loop, temperature=0.0) == want


@pytest.mark.parametrize("n, batch_size", [(2, 64), (2, 3), (3, 2)])
def test_generate_equals_its_hf_path_when_greedy(organism, n, batch_size):
    """Whole groups per batch, a group split over batches, prompt ids and texts alike."""
    model, tok, _ = organism
    from vgrout.lm.tokens import chat_prompt

    texts = [chat_prompt(tok, f"Write f(x) returning x plus {i}.") for i in (1, 22, 333)]
    spec = SamplingSpec(max_new_tokens=40, temperature=0.0, batch_size=batch_size)
    args = (model, tok, texts, n, spec)
    assert qwen3.supports(model) and fused.supports(model)
    want = sampling._generate_hf(*args)
    assert sampling._generate_lean(*args, loop=decode.decode) == want
    assert sampling._generate_lean(*args, loop=fused.decode) == want


# (2) each sampled step is scored with the full sequence's logits


def logit_tolerance(logits: torch.Tensor, dtype: torch.dtype, layers: int) -> float:
    """16 eps of the dtype at the logits' scale, growing as sqrt(depth).

    The two sides sum the same terms in other orders and shapes, and each
    layer's rounding adds up like a random walk. Measured (max over rows,
    steps and vocabulary, in units of eps x max|logit|): fp32 3-9, bf16
    0.5-3, and HF's own full forward is as far from a float64 one. An
    off-by-one position or a row attending another row's cache is off by
    whole units of the logits.
    """
    return 16 * torch.finfo(dtype).eps * float(logits.abs().max()) * math.sqrt(layers)


@torch.no_grad()
def full_sequence_logits(model, prompts, n: int, tokens: torch.Tensor) -> torch.Tensor:
    """[rows, steps, vocab] fp32 logits of each new token from one forward over prompt + tokens."""
    rows, steps = tokens.shape
    seqs = [prompts[r // n] + tokens[r, :-1].tolist() for r in range(rows)]
    ids, mask = left_padded(seqs)
    # positions count from each row's first token, as generate() numbers them; the
    # forward's default (0 at the first pad) gives other rope angles, which differ
    # by ~1e-5 in any dtype since the model computes them in fp32
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    return logits[:, -steps:]  # position of token s-1 scores token s


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("which", ["tiny", "organism"])
def test_sampled_steps_use_the_full_sequence_logits(which, dtype, loop, request):
    if which == "tiny":
        model, prompts, eos = tiny_qwen3(dtype=dtype), tiny_prompts(), -1
    else:
        model, tok, prompts = request.getfixturevalue("organism")
        model, eos = _copy_as(model, dtype), tok.eos_token_id
    n, steps = 3, 30
    torch.manual_seed(0)
    d = LOOPS[loop](model, prompts, n, SamplingSpec(steps), eos, PAD, keep_logits=True)
    want = full_sequence_logits(model, prompts, n, d.tokens)
    live = torch.ones(d.tokens.shape, dtype=torch.bool)  # steps at which the row was running
    live[:, 1:] = (d.tokens[:, :-1] == eos).cumsum(1) == 0
    assert d.logits.shape == want.shape
    err = (d.logits - want).abs().amax(-1)[live].max()
    tol = logit_tolerance(want, dtype, model.config.num_hidden_layers)
    assert err <= tol, f"max |logit diff| {err:.3g} > {tol:.3g}"


def _copy_as(model, dtype):
    import copy

    return copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model


# (3) the sampler: seeded, and the distribution model.generate would sample from


@pytest.mark.parametrize("loop", LOOPS)
def test_sampling_is_fixed_by_the_seed(loop):
    model, prompts = tiny_qwen3(), tiny_prompts()

    def run(seed):
        torch.manual_seed(seed)
        return lean(model, prompts, 16, None, 4, loop, temperature=1.0, top_k=50, top_p=0.9)

    first = run(0)
    assert run(0) == first
    assert run(1) != first
    assert len({tuple(r) for r in first[:4]}) > 1, "rows of one prompt sample apart"


@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(0.7, 0, 1.0), (1.0, 5, 1.0), (1.3, 0, 0.8), (0.6, 20, 0.95)]
)
def test_filters_match_hf_logits_warpers(temperature, top_k, top_p):
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(0)) * 3
    want = warpers(None, logits.clone())
    got = decode.filter_logits(logits, temperature, top_k, top_p)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.equal(got[~torch.isinf(got)], want[~torch.isinf(want)])


def test_draw_samples_the_given_probabilities():
    probs = torch.tensor([0.5, 0.0, 0.2, 1e-3, 0.0, 0.299])
    rows = 400_000
    torch.manual_seed(0)
    got = decode.draw(probs.expand(rows, -1))
    counts = torch.bincount(got, minlength=len(probs)).double()
    assert counts[probs == 0].sum() == 0, "a token of probability 0 was drawn"
    sd = (rows * probs * (1 - probs)).sqrt()
    assert ((counts - rows * probs).abs() <= 5 * sd + 1).all(), counts / rows


# (4) a shared prompt's n rows equal the prompt repeated n times


@pytest.mark.parametrize("loop", LOOPS)
def test_shared_prompt_rows_equal_repeated_prompts_on_tiny_qwen3(loop):
    model, prompts = tiny_qwen3(), tiny_prompts()
    eos = early_eos(model, prompts, 24)
    shared = lean(model, prompts, 24, eos, 3, loop, temperature=0.0)
    repeated = lean(
        model, [p for p in prompts for _ in range(3)], 24, eos, 1, loop, temperature=0.0
    )
    assert shared == repeated


def test_shared_prompt_rows_equal_repeated_prompts_on_organism(organism):
    model, tok, prompts = organism
    shared = lean(model, prompts, 56, tok.eos_token_id, n=4, temperature=0.0)
    repeated = lean(
        model, [p for p in prompts for _ in range(4)], 56, tok.eos_token_id, temperature=0.0
    )
    assert shared == repeated


# adapters: the loop calls the model's modules, so every adapter path applies


def routed_tiny():
    from helpers import tiny_qwen3 as support_qwen3

    from vgrout.adapters import attach_routed_adapters

    model = attach_routed_adapters(
        support_qwen3(0), r=4, init="gaussian", pairs=PAIRS, tokenizer=ByteTokenizer()
    )
    perturb_blocks(model, scale=0.3)
    return model.eval()


def test_greedy_matches_hf_through_routed_and_merged_adapters():
    from vgrout.adapters import ablate_quarantine, merged_for_generation

    model, prompts, steps = routed_tiny(), tiny_prompts(), 20
    views = {
        "routed (both blocks)": lambda: torch.no_grad(),
        "deployed (quarantine ablated)": lambda: ablate_quarantine(model),
        "merged trained": lambda: merged_for_generation(model, "trained"),
        "merged deployed": lambda: merged_for_generation(model, "deployed"),
    }
    seen = {}
    for name, view in views.items():
        with view():
            assert qwen3.supports(model), name
            seen[name] = lean(model, prompts, steps, None, temperature=0.0)
            assert seen[name] == hf_greedy(model, prompts, steps, None), name
            # the routed forward is not a weight the fused loop can read; merged it is
            assert fused.supports(model) == name.startswith("merged"), name
            if name.startswith("merged"):
                assert (
                    lean(model, prompts, steps, None, loop="fused", temperature=0.0) == seen[name]
                )
    assert seen["routed (both blocks)"] == seen["merged trained"]
    assert seen["routed (both blocks)"] != seen["deployed (quarantine ablated)"]


@pytest.mark.parametrize("loop", LOOPS)
def test_greedy_matches_hf_through_a_plain_peft_lora(loop):
    """The fused loop reads the LoRA layers' merged weights; the lean one calls them."""
    from peft import LoraConfig, get_peft_model

    base = tiny_qwen3()
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(base, cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    prompts = tiny_prompts()
    assert qwen3.supports(model) and fused.supports(model)
    with model.disable_adapter():
        off = lean(model, prompts, 20, None, loop=loop, temperature=0.0)
    on = lean(model, prompts, 20, None, loop=loop, temperature=0.0)
    assert on == hf_greedy(model, prompts, 20, None) and on != off


def test_unsupported_models_fall_back_to_model_generate():
    model = tiny_qwen3()
    assert qwen3.supports(model)
    handle = model.model.layers[0].register_forward_hook(lambda *a: None)
    assert not qwen3.supports(model), "a hook on a bypassed module would not fire"
    handle.remove()
    model.config.layer_types = ["sliding_attention", "full_attention"]
    assert not qwen3.supports(model)


def test_generate_samples_with_the_decoder_its_spec_names_fused_by_default(monkeypatch):
    model, tok = tiny_qwen3(), ByteTokenizer()
    calls = []
    monkeypatch.setattr(sampling, "_generate_lean", lambda *a, loop: calls.append(loop.__module__))
    monkeypatch.setattr(sampling, "_generate_hf", lambda *a: calls.append("hf"))
    for decoder in ("hf", "lean", "fused"):
        sampling.generate(model, tok, ["ab"], 2, SamplingSpec(3, decoder=decoder))
    sampling.generate(model, tok, ["ab"], 2)
    assert calls == ["hf", "vgrout.lm.decode", "vgrout.lm.fused", "vgrout.lm.fused"]
    with pytest.raises(ValueError, match="decoder='fast': expected one of"):
        SamplingSpec(3, decoder="fast")


def test_the_config_names_a_bad_decoder():
    from vgrout.grpo.presets import preset

    # the default everywhere: lean's cache, few ops, rows drop out
    assert preset("smoke").decoder == SamplingSpec().decoder == "fused"
    with pytest.raises(ValueError, match="decoder='fast'"):
        preset("smoke", decoder="fast")
