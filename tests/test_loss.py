"""The Dr.GRPO objective: ratio, clip, KL and the constant normaliser."""

import torch
from helpers import rounding_tol

from vgrout.grpo.loss import grpo_loss


def test_on_policy_gradient_is_advantage_weighted_logprob_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = grpo_loss(logp, logp.detach(), adv, mask, clip_eps=0.2, normaliser=10.0)
    loss.backward()
    expected = -(adv[:, None] * mask) / 10.0
    # ratio = exp(0) = 1 exactly; a few float32 products and one sum over the tokens
    tol = rounding_tol(expected, width=mask.numel())
    torch.testing.assert_close(logp.grad, expected, atol=tol, rtol=0)


def test_clip_stops_gradient_beyond_the_trust_region_for_positive_advantage():
    old = torch.zeros(1, 1)
    logp = torch.tensor([[0.5]], requires_grad=True)  # ratio e^0.5 = 1.65 > 1.2
    loss, stats = grpo_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 1), 0.2, 1.0)
    loss.backward()
    assert logp.grad.abs().item() == 0.0
    assert stats["clip_frac"] == 1.0


def test_clip_keeps_gradient_for_negative_advantage_beyond_upper_bound():
    old = torch.zeros(1, 1)
    logp = torch.tensor([[0.5]], requires_grad=True)
    loss, _ = grpo_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 1), 0.2, 1.0)
    loss.backward()
    assert logp.grad.item() > 0


def test_k3_kl_is_zero_at_the_reference_and_positive_away_from_it():
    logp = torch.tensor([[-1.0, -1.0]])
    _, same = grpo_loss(
        logp, logp, torch.zeros(1), torch.ones(1, 2), 0.2, 1.0, ref_logp=logp.clone(), kl_beta=0.1
    )
    _, away = grpo_loss(
        logp, logp, torch.zeros(1), torch.ones(1, 2), 0.2, 1.0, ref_logp=logp - 1.0, kl_beta=0.1
    )
    assert same["kl"] == 0.0
    assert away["kl"] > 0.0


def test_masked_tokens_contribute_nothing():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = grpo_loss(
        logp, logp.detach(), torch.tensor([1.0]), torch.tensor([[0.0, 1.0]]), 0.2, 1.0
    )
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0
