"""OREAL token RM as pure tensor functions: q_t, w±, top-k rescaling, the sequence-level BCE."""

from __future__ import annotations

import math

import pytest
import torch

from oreal.token_rm import (
    oreal_token_weights,
    roc_auc,
    sequence_logits,
    threshold_weights,
    token_probabilities,
    token_rm_loss,
    topk_rescale,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logits() -> tuple[torch.Tensor, torch.Tensor]:
    # Row 0 has 4 response tokens, row 1 has 2 (compact layout: padding on the right).
    logits = torch.tensor([[1.0, -3.0, 2.0, 4.0], [-1.0, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    return logits, mask


def test_cumulative_mean_probability_matches_a_hand_computation() -> None:
    logits, mask = _logits()
    q = token_probabilities(logits, mask, "cumulative_mean")
    # Row 0 prefix means: 1, (1-3)/2 = -1, (1-3+2)/3 = 0, (1-3+2+4)/4 = 1.
    expected_row0 = [sigmoid(1.0), sigmoid(-1.0), sigmoid(0.0), sigmoid(1.0)]
    # Row 1: -1, (-1+0.5)/2 = -0.25; the padding (9.0 there) must not leak in.
    expected_row1 = [sigmoid(-1.0), sigmoid(-0.25)]
    assert torch.allclose(q[0], torch.tensor(expected_row0))
    assert torch.allclose(q[1, :2], torch.tensor(expected_row1))
    per_token = token_probabilities(logits, mask, "per_token")
    assert torch.allclose(per_token[0], torch.sigmoid(logits[0]))
    with pytest.raises(ValueError, match="weight source"):
        token_probabilities(logits, mask, "mean")  # type: ignore[arg-type]


def test_weights_by_hand_on_correct_and_wrong_rows() -> None:
    logits, mask = _logits()
    positive = torch.tensor([True, False])
    out = oreal_token_weights(logits, mask, positive)
    # Correct row: w+ = max(2q - 1, 0) with q from the prefix means 1, -1, 0, 1.
    w_pos = [max(2 * sigmoid(m) - 1, 0.0) for m in (1.0, -1.0, 0.0, 1.0)]
    # Wrong row: w- = max(1 - 2q, 0) with prefix means -1, -0.25; padding gets 0.
    w_neg = [max(1 - 2 * sigmoid(m), 0.0) for m in (-1.0, -0.25)] + [0.0, 0.0]
    assert torch.allclose(out.weights, torch.tensor([w_pos, w_neg]), atol=1e-6)
    assert out.weights[0, 1] == 0 and out.weights[0, 2] == 0  # q <= 0.5 gets no credit


def test_zero_head_gives_all_weights_zero() -> None:
    logits = torch.zeros(3, 5)
    mask = torch.ones(3, 5, dtype=torch.bool)
    out = oreal_token_weights(logits, mask, torch.tensor([True, False, True]))
    assert torch.equal(out.weights, torch.zeros(3, 5))
    assert torch.equal(out.q, torch.full((3, 5), 0.5))


def test_positive_and_negative_weights_are_never_both_positive() -> None:
    q = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    q = torch.cat([q, torch.tensor([0.0, 0.5, 1.0])])
    w_pos, w_neg = threshold_weights(q)
    assert torch.all((w_pos > 0) & (w_neg > 0) == False)  # noqa: E712
    assert (w_pos > 0).any() and (w_neg > 0).any()
    assert torch.all((w_pos >= 0) & (w_pos <= 1) & (w_neg >= 0) & (w_neg <= 1))


def test_weights_carry_no_gradient() -> None:
    logits = torch.randn(2, 6, requires_grad=True)
    mask = torch.ones(2, 6, dtype=torch.bool)
    for topk in (None, 0.5):
        out = oreal_token_weights(logits, mask, torch.tensor([True, False]), topk_ratio=topk)
        assert not out.weights.requires_grad and not out.q.requires_grad
        assert out.weights.grad_fn is None


def test_topk_rescale_values() -> None:
    prob = torch.tensor(
        [[0.9, 0.2, 0.6, 0.8, 0.1, 0.7, 0.3, 0.4], [0.5, 0.9, 0.3, 0.0, 0, 0, 0, 0]]
    )
    mask = torch.tensor([[True] * 8, [True, True, True, False, False, False, False, False]])
    out = topk_rescale(prob, mask, ratio=0.25)
    # Row 0: T = 8 -> k = 2: 0.9 -> 1, 0.8 -> 0 (the lowest kept value), everything else 0.
    assert torch.allclose(out[0], torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]))
    # Row 1: T = 3 -> floor(0.75) = 0, raised to k = 1: the single kept token gets 1.
    assert torch.allclose(out[1], torch.tensor([0, 1.0, 0, 0, 0, 0, 0, 0]))
    half = topk_rescale(prob[:1], mask[:1], ratio=0.5)
    # k = 4: 0.9, 0.8, 0.7, 0.6 -> (v - 0.6) / 0.3.
    expected = torch.tensor([[1.0, 0, 0, 2 / 3, 0, 1 / 3, 0, 0]])
    assert torch.allclose(half, expected, atol=1e-6)
    # Equal kept values all get 1 (the release's rule), padding stays 0.
    flat = topk_rescale(torch.full((1, 4), 0.5), torch.tensor([[True, True, True, False]]), 1.0)
    assert torch.equal(flat, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))


def test_topk_weights_rank_wrong_rows_by_one_minus_q() -> None:
    logits = torch.tensor([[2.0, -2.0, 0.5, -0.5]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    out = oreal_token_weights(
        logits, mask, torch.tensor([False]), source="per_token", topk_ratio=0.5
    )
    # Wrong row: p = 1 - q, largest at h = -2 (-> 1) then h = -0.5 (-> 0, lowest kept).
    assert torch.allclose(out.weights, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))


def test_rm_loss_is_one_bce_per_sequence_on_the_mean_logit() -> None:
    logits, mask = _logits()
    labels = torch.tensor([1.0, 0.0])
    loss = token_rm_loss(logits, mask, labels, num_seqs=2)
    mean0, mean1 = (1 - 3 + 2 + 4) / 4, (-1 + 0.5) / 2
    expected = (-math.log(sigmoid(mean0)) - math.log(1 - sigmoid(mean1))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Not the per-token BCE misreading (natolambert/rlhf-book #505): a different number.
    per_token = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[mask], labels[:, None].expand_as(logits)[mask]
    )
    assert abs(per_token.item() - expected) > 0.1
    assert torch.allclose(sequence_logits(logits, mask), torch.tensor([mean0, mean1]))


def test_rm_loss_and_gradient_are_micro_batch_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 1, 3, 4, 2, 5])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    full = token_rm_loss(logits, mask, labels, num_seqs=6)
    (full_grad,) = torch.autograd.grad(full, logits)
    for size in (1, 2, 4):
        total = torch.zeros((), dtype=torch.float64)
        grad = torch.zeros_like(logits)
        for start in range(0, 6, size):
            part = slice(start, start + size)
            piece = token_rm_loss(logits[part], mask[part], labels[part], num_seqs=6)
            total = total + piece.detach()
            grad += torch.autograd.grad(piece, logits)[0]
        assert torch.allclose(total, full.detach())
        assert torch.allclose(grad, full_grad)


def test_rm_loss_gradient_against_finite_differences_and_closed_form() -> None:
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)  # [B, R, H]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    head = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)

    def loss_of(weight: torch.Tensor) -> torch.Tensor:
        return token_rm_loss(hidden @ weight, mask, labels, num_seqs=3)

    assert torch.autograd.gradcheck(loss_of, (head,))
    # Closed form: ∂L/∂W = (1/S) Σ_s (σ(h̄_s) - y_s) · mean_t hidden_{s,t}.
    (grad,) = torch.autograd.grad(loss_of(head), head)
    mean_hidden = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    residual = torch.sigmoid(mean_hidden @ head.detach()) - labels
    assert torch.allclose(grad, (residual[:, None] * mean_hidden).sum(0) / 3)


def test_roc_auc() -> None:
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert roc_auc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == 0.5
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])) is None
