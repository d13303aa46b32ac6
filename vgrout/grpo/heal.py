"""Retain-heal: after training, re-fit the deployed block on clean completions.

Routing removes the quarantine's share of the update at deployment, and with
it whatever the quarantine absorbed that was useful; a few steps of NLL on
clean pair completions through the deployed block alone can restore solving.
The quarantine must not move during healing, so every step asserts that it
received exactly zero gradient.
"""

from __future__ import annotations

import torch

from vgrout.lm.logprobs import completion_nll
from vgrout.lm.tokens import chat_prompt, encode


def retain_heal(policy, tokenizer, pairs, cfg, batch_size: int = 8) -> dict:
    """`cfg.heal_steps` AdamW steps of clean-completion NLL in the deployed view."""
    if not pairs:
        raise ValueError("retain-heal needs pairs (their clean sides are the healing data)")
    params = policy.params["deployed"]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 4242)
    device = next(policy.model.parameters()).device
    losses = []
    for _ in range(cfg.heal_steps):
        idx = torch.randint(len(pairs), (min(batch_size, len(pairs)),), generator=gen).tolist()
        batch = encode(
            tokenizer,
            [chat_prompt(tokenizer, pairs[i].prompt) for i in idx],
            [pairs[i].clean for i in idx],
        ).to(device)
        opt.zero_grad(set_to_none=True)
        for p in policy.params["quarantine"]:
            p.grad = None
        with policy.deployed_forward():
            logits = policy.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).logits
            loss = completion_nll(logits, batch.input_ids, batch.completion_mask)
            loss.backward()
        leaked = [
            p
            for p in policy.params["quarantine"]
            if p.grad is not None and bool(p.grad.abs().max() > 0)
        ]
        if leaked:
            raise AssertionError(f"retain-heal: {len(leaked)} quarantine tensors received gradient")
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
    return {
        "heal_steps": cfg.heal_steps,
        "heal_loss_first": losses[0],
        "heal_loss_last": losses[-1],
    }
