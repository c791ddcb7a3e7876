"""Truncated importance sampling of the trainer / engine mismatch, and the engine log-prob table."""

from __future__ import annotations

import math

import pytest
import torch

from oreal.rollout import GenerationOutput
from oreal.rollout.mismatch import (
    mismatch_metrics,
    pad_rollout_logprobs,
    truncated_importance_weights,
)


def test_weights_are_the_capped_detached_ratio():
    trainer = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -4.0]], requires_grad=True)
    engine = torch.tensor([[-1.0, -2.5, -2.0], [-2.0, -0.1, -4.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    weights = truncated_importance_weights(trainer, engine, cap=2.0, mask=mask)
    expected = torch.tensor([[1.0, math.exp(0.5), 2.0], [math.exp(-1.0), 1.0, 0.0]])
    torch.testing.assert_close(weights, expected)
    assert not weights.requires_grad
    # As a factor of the policy-gradient term, the gradient is w * d(log pi_trainer).
    loss = -(weights * trainer).sum()
    loss.backward()
    torch.testing.assert_close(trainer.grad, -expected)
    with pytest.raises(ValueError):
        truncated_importance_weights(trainer, engine[:, :2])
    with pytest.raises(ValueError):
        truncated_importance_weights(trainer, engine, cap=0.0)


def test_identical_distributions_give_unit_weights_and_zero_kl():
    logprobs = torch.log(torch.rand(4, 7) * 0.9 + 0.05)
    mask = torch.ones(4, 7, dtype=torch.bool)
    assert torch.equal(truncated_importance_weights(logprobs, logprobs), torch.ones(4, 7))
    metrics = mismatch_metrics(logprobs, logprobs, mask)
    assert metrics == {"is_ratio_mean": 1.0, "is_truncated_frac": 0.0, "engine_kl_k3": 0.0}
    shifted = mismatch_metrics(logprobs + 1.0, logprobs, mask, cap=2.0)
    assert shifted["is_truncated_frac"] == 1.0 and shifted["engine_kl_k3"] > 0.7


def test_engine_logprobs_table_is_response_aligned():
    outs = [
        GenerationOutput(0, 0, "p", [1], [5, 6, 7], "x", "eos", logprobs=[-0.1, -0.2, -0.3]),
        GenerationOutput(0, 1, "p", [1], [8], "y", "length", logprobs=[-1.5]),
    ]
    table = pad_rollout_logprobs(outs)
    torch.testing.assert_close(table, torch.tensor([[-0.1, -0.2, -0.3], [-1.5, 0.0, 0.0]]))
    assert pad_rollout_logprobs(outs, width=2).shape == (2, 2)
    with pytest.raises(ValueError):
        pad_rollout_logprobs([GenerationOutput(0, 0, "p", [1], [5], "x", "eos")])
