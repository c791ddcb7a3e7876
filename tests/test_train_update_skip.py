"""Rows whose loss is exactly 0 with no gradient (GRPO's all-equal groups without KL or entropy)
run forward only, and the update is the one their backward would have given."""

from __future__ import annotations

import pytest
import torch

from oreal.algorithms import (
    LossNormalizers,
    algorithm_params,
    compute_policy_loss,
    rows_without_gradient,
)
from oreal.batch import pad_rollouts
from oreal.models.tiny import build_tiny_model, build_tiny_tokenizer
from oreal.optim import make_optimizer
from oreal.runtime import Runtime
from oreal.train import update as update_module
from oreal.train.config import OptimConfig
from oreal.train.update import policy_update


def test_rows_without_gradient_follows_loss_and_coefficients():
    advantages = torch.tensor([0.0, 1.5, 0.0, -0.5])
    inert = torch.tensor([True, False, True, False])
    for name in ("grpo", "dr_grpo", "rloo", "raft"):
        params = algorithm_params(name, kl_coef=0.0, entropy_coef=0.0)
        assert rows_without_gradient(params, advantages).tolist() == inert.tolist(), name
        with_kl = algorithm_params(name, kl_coef=0.01, entropy_coef=0.0)
        assert not rows_without_gradient(with_kl, advantages).any()
        with_entropy = algorithm_params(name, kl_coef=0.0, entropy_coef=0.001)
        assert not rows_without_gradient(with_entropy, advantages).any()
    oreal = algorithm_params("oreal", kl_coef=0.0, entropy_coef=0.0)
    assert not rows_without_gradient(oreal, advantages).any()  # its positive term is not ∝ A
    per_token = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    grpo = algorithm_params("grpo", kl_coef=0.0)
    assert rows_without_gradient(grpo, per_token).tolist() == [True, False]


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "raft"])
def test_a_zero_advantage_row_has_zero_loss_and_gradient(name):
    """The claim rows_without_gradient rests on, for every loss it names, with clipping
    active (ratio != 1) and token weights."""
    params = algorithm_params(name, kl_coef=0.0, entropy_coef=0.0)
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(2, 5, dtype=torch.bool)
    weight = torch.randn(2, 5, generator=gen, dtype=torch.float64).requires_grad_(True)
    norms = LossNormalizers.from_masks(mask, torch.tensor([False, True]), max_len=5)
    loss, _ = compute_policy_loss(
        params,
        logprobs=torch.nn.functional.logsigmoid(weight),
        old_logprobs=torch.full((2, 5), -0.3, dtype=torch.float64),
        advantages=torch.tensor([0.0, 0.0], dtype=torch.float64),
        response_mask=mask,
        token_weights=torch.rand(2, 5, generator=gen, dtype=torch.float64),
        positive=torch.tensor([False, False]),
        pass_rate=torch.tensor([0.0, 0.0], dtype=torch.float64),
        normalizers=norms,
    )
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.count_nonzero(weight.grad) == 0


def _batch(tokenizer, advantages: list[float]):
    gen = torch.Generator().manual_seed(1)
    pairs = [
        (
            torch.randint(5, 60, (4 + i % 3,), generator=gen).tolist(),
            torch.randint(5, 60, (3 + i % 4,), generator=gen).tolist(),
        )
        for i in range(len(advantages))
    ]
    batch = pad_rollouts(pairs, tokenizer.pad_token_id)
    batch.advantages = torch.tensor(advantages)
    batch.positive = batch.advantages > 0
    batch.pass_rate = torch.full_like(batch.advantages, 0.5)
    return batch


def _update(tokenizer, advantages, monkeypatch, *, skip: bool, param_dtype=torch.float32):
    model = build_tiny_model(tokenizer, seed=0)
    optimizer, _ = make_optimizer(model.parameters(), OptimConfig(lr=1e-3), 10)
    calls: list[bool] = []
    forward_backward = update_module._forward_backward

    def recording(*args):
        calls.append(args[4])  # needs_grad
        return forward_backward(*args)

    monkeypatch.setattr(update_module, "_forward_backward", recording)
    if not skip:
        monkeypatch.setattr(
            update_module, "rows_without_gradient", lambda _p, adv: torch.zeros(len(adv)) > 0
        )
    logged = policy_update(
        model,
        optimizer,
        algorithm_params("grpo", kl_coef=0.0),
        _batch(tokenizer, advantages),
        runtime=Runtime.from_env("cpu"),
        micro_batch_size=2,
        autocast=False,
        param_dtype=param_dtype,
    )
    monkeypatch.undo()
    return model.state_dict(), logged, calls


@pytest.mark.parametrize(
    "advantages",
    [
        [0.0, 0.0, 0.9, -0.9, 0.0, 0.0, 0.3, -0.3],  # two inert groups of 2, two live ones
        [0.0] * 6,  # nothing to learn: AdamW still steps (weight decay) on zero gradients
    ],
)
@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_skipping_backward_gives_the_same_update_and_logs(advantages, param_dtype, monkeypatch):
    tokenizer = build_tiny_tokenizer()
    settings = {"param_dtype": param_dtype}
    skipped, logged_skip, calls_skip = _update(
        tokenizer, advantages, monkeypatch, skip=True, **settings
    )
    full, logged_full, calls_full = _update(
        tokenizer, advantages, monkeypatch, skip=False, **settings
    )
    zeros = sum(a == 0 for a in advantages)
    assert calls_full == [True] * (len(advantages) // 2)
    assert calls_skip.count(False) == zeros // 2  # inert rows ran forward only
    assert calls_skip == sorted(calls_skip, reverse=True)  # live micro-batches first
    for name, value in full.items():
        torch.testing.assert_close(skipped[name], value, rtol=0, atol=2e-7, msg=name)
    assert logged_skip.keys() == logged_full.keys()
    for key in logged_full:
        assert logged_skip[key] == pytest.approx(logged_full[key], rel=1e-5, abs=1e-7), key
    before = build_tiny_model(tokenizer, seed=0).state_dict()
    assert any(not torch.equal(before[n], v) for n, v in skipped.items())  # it did step
