"""Generate and train-step times: bare model, one plain LoRA, routed adapters
unmerged, routed adapters merged for generation, routed adapters as one product.

    .venv/bin/python benchmarks/bench_adapters.py --model organism
    .venv/bin/python benchmarks/bench_adapters.py --model random   # organism-sized random Qwen3

Generation: batch 8, exactly 64 new tokens (sampling at T=1, eos suppressed
by min_new_tokens). Train step: forward + backward + AdamW on the 8 prompt+
completion rows; the routed step runs under a mixed keep/absorb/route mask.
"merged" times include building the merged weights and restoring them.
Median of --repeats runs after one warm-up, on --threads threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vgrout.adapters import (
    attach_routed_adapters,
    merged_for_generation,
    route,
    trainable_parameters,
)


def organism_sized_qwen3(seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=800,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        head_dim=32,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(cfg).eval()


def load(kind: str):
    """(fresh model, prompt ids [8, p], attention mask [8, p], pad id)."""
    if kind == "random":
        model = organism_sized_qwen3()
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(3, 800, (8, 40), generator=g)
        return model, ids, torch.ones_like(ids), 0
    from vgrout.lm.load import load_policy
    from vgrout.lm.tokens import chat_prompt

    model, tok = load_policy("organism", device="cpu")
    prompts = [
        chat_prompt(tok, f"Write a function that returns {i} plus its argument.") for i in range(8)
    ]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return model.eval(), enc["input_ids"], enc["attention_mask"], tok.pad_token_id


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def generate(model, ids, attn, pad, new_tokens):
    with torch.no_grad():
        return model.generate(
            input_ids=ids,
            attention_mask=attn,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=pad,
        )


def train_step(model, params, opt, seqs, attn, masks=None):
    """Mean token log-likelihood of the sequences; backward; AdamW step."""

    def loss():
        logits = model(input_ids=seqs, attention_mask=attn).logits[:, :-1]  # [8, pos-1, vocab]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, seqs[:, 1:, None])[..., 0]
        return -(logp * attn[:, 1:]).sum() / attn[:, 1:].sum()

    opt.zero_grad(set_to_none=True)
    if masks is None:
        loss().backward()
    else:
        with route(model, *masks):
            loss().backward()
    opt.step()


def variants(kind: str, r: int):
    """(label, model, trainable params, generation context factory, masks)."""
    import contextlib

    from peft import LoraConfig, get_peft_model

    bare, ids, attn, pad = load(kind)
    yield (
        "bare model (full fine-tune step)",
        bare,
        list(bare.parameters()),
        contextlib.nullcontext,
        None,
        (ids, attn, pad),
    )
    base, *_ = load(kind)
    lora = get_peft_model(
        base,
        LoraConfig(
            r=r,
            lora_alpha=2 * r,
            lora_dropout=0.0,
            target_modules=[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        ),
    )
    yield (
        "one plain LoRA",
        lora,
        [p for p in lora.parameters() if p.requires_grad],
        contextlib.nullcontext,
        None,
        (ids, attn, pad),
    )
    masks = (torch.tensor([0, 1, 1, 1, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 1, 0, 0, 0, 1]))
    base, *_ = load(kind)
    routed = attach_routed_adapters(base, r=r, init="pissa")
    params = [p for ps in trainable_parameters(routed).values() for p in ps]
    yield "routed, unmerged", routed, params, contextlib.nullcontext, masks, (ids, attn, pad)
    yield (
        "routed, merged for generation (trained)",
        routed,
        params,
        lambda: merged_for_generation(routed, "trained"),
        masks,
        (ids, attn, pad),
    )
    yield (
        "routed, merged for generation (deployed)",
        routed,
        params,
        lambda: merged_for_generation(routed, "deployed"),
        masks,
        (ids, attn, pad),
    )
    base, *_ = load(kind)
    one = attach_routed_adapters(base, r=r, init="pissa", one_product=True)
    params = [p for ps in trainable_parameters(one).values() for p in ps]
    yield (
        "routed, one product, unmerged",
        one,
        params,
        contextlib.nullcontext,
        masks,
        (ids, attn, pad),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["organism", "random"], default="organism")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = []
    for label, model, params, gen_ctx, masks, (ids, attn, pad) in variants(args.model, args.r):

        def gen(model=model, gen_ctx=gen_ctx, ids=ids, attn=attn, pad=pad):
            with gen_ctx():
                return generate(model, ids, attn, pad, args.new_tokens)

        torch.manual_seed(0)
        seqs = gen()  # also the warm-up
        full_attn = torch.cat(
            [attn, torch.ones(len(ids), seqs.shape[1] - ids.shape[1], dtype=attn.dtype)], 1
        )
        opt = torch.optim.AdamW(params, lr=1e-6)

        def step(model=model, params=params, opt=opt, seqs=seqs, full_attn=full_attn, masks=masks):
            train_step(model, params, opt, seqs, full_attn, masks)

        step()
        cases.append((label, gen, step, {"gen": [], "step": []}))
    # Rounds interleave the variants so that load from other processes hits all alike.
    for _ in range(args.rounds):
        for _label, gen, step, times in cases:
            times["gen"].append(seconds(gen))
            times["step"].append(seconds(step))
    print(
        f"model={args.model} batch=8 new_tokens={args.new_tokens} r={args.r} threads={args.threads} "
        f"rounds={args.rounds} torch={torch.__version__}"
    )
    print(
        f"| variant | generate 8 x {args.new_tokens}, min / median (ms) | train step, min / median (ms) |"
    )
    print("| --- | ---: | ---: |")
    for label, _, _, times in cases:
        g, t = times["gen"], times["step"]
        print(
            f"| {label} | {1e3 * min(g):.0f} / {1e3 * statistics.median(g):.0f} "
            f"| {1e3 * min(t):.1f} / {1e3 * statistics.median(t):.1f} |"
        )


if __name__ == "__main__":
    main()
