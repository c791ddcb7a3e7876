"""bf16 working copies of fp32 parameters (oreal.models.precision): the update trains the
fp32 masters with the bf16 copies' gradients summed in fp32, scoring and the reference see
the same bf16 weights, and the fp32 parameters are what everything else sees."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from oreal.algorithms import algorithm_params
from oreal.batch import TrainBatch, pad_rollouts
from oreal.models import token_logprobs
from oreal.models.direct_grads import gradients_into_grad
from oreal.models.logprobs import batch_logprobs
from oreal.models.precision import Bf16Parameters, working_weights
from oreal.models.reference import FrozenReference
from oreal.models.tiny import build_tiny_model
from oreal.optim import make_optimizer
from oreal.runtime import Runtime
from oreal.train import update as update_module
from oreal.train.config import OptimConfig
from oreal.train.update import global_normalizers, policy_update


def bf16_twin(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters (not buffers) are stored in bf16."""
    twin = copy.deepcopy(model)
    for param in twin.parameters():
        param.data = param.data.to(torch.bfloat16)
    return twin


def rollouts(tokenizer, rows: int = 6, seed: int = 1) -> TrainBatch:
    gen = torch.Generator().manual_seed(seed)
    pairs = [
        (
            torch.randint(5, 60, (4 + i % 3,), generator=gen).tolist(),
            torch.randint(5, 60, (3 + i % 4,), generator=gen).tolist(),
        )
        for i in range(rows)
    ]
    batch = pad_rollouts(pairs, tokenizer.pad_token_id)
    batch.advantages = torch.randn(rows, generator=gen)
    batch.positive = batch.advantages > 0
    batch.pass_rate = torch.full_like(batch.advantages, 0.5)
    return batch


def loss_backward(model: nn.Module, batch: TrainBatch, seed: int) -> None:
    weights = torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(seed))
    logprobs, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)
    (logprobs.float() * weights * batch.loss_mask).sum().backward()


def test_inside_the_block_parameters_are_bf16_and_outside_the_fp32_ones_come_back(tokenizer):
    model = build_tiny_model(seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    objects = [id(p) for p in model.parameters()]
    batch = rollouts(tokenizer)
    twin = bf16_twin(model)
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for seed, rows in enumerate((slice(0, 3), slice(3, 6))):
        twin.zero_grad(set_to_none=True)
        loss_backward(twin, batch[rows], seed)
        for name, param in twin.named_parameters():
            expected[name] += param.grad.float()

    with Bf16Parameters(model) as working:
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())
        assert [id(p) for p in model.parameters()] == objects
        for seed, rows in enumerate((slice(0, 3), slice(3, 6))):
            loss_backward(model, batch[rows], seed)
            working.widen_grads()
            assert all(p.grad is None for p in model.parameters())

    for name, param in model.named_parameters():
        assert param.dtype == torch.float32 and torch.equal(param.detach(), before[name]), name
        assert param.grad.dtype == torch.float32
        assert torch.equal(param.grad, expected[name]), name


def test_an_error_inside_the_block_restores_the_fp32_parameters_and_gradients():
    model = build_tiny_model(seed=0)
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    before = first.detach().clone()
    with pytest.raises(RuntimeError, match="boom"), Bf16Parameters(model):
        raise RuntimeError("boom")
    assert first.dtype == torch.float32 and torch.equal(first.detach(), before)
    assert torch.equal(first.grad, torch.ones_like(first))


def test_working_weights_refuses_other_dtypes():
    with pytest.raises(ValueError, match="float16"):
        working_weights(build_tiny_model(seed=0), torch.float16)


def test_the_update_steps_the_fp32_masters_with_the_bf16_gradients_summed_in_fp32(tokenizer):
    """policy_update(param_dtype=bf16) equals, bit for bit, this recipe done by hand: each
    micro-batch's forward/backward on a bf16 copy, its gradients widened and summed in fp32,
    clipped, and AdamW stepping the fp32 weights."""
    model = build_tiny_model(seed=0)
    by_hand = copy.deepcopy(model)
    batch = rollouts(tokenizer)
    params = algorithm_params("rloo", kl_coef=0.0)
    runtime = Runtime()
    normalizers = global_normalizers(batch, runtime, max_len=None)

    twin = bf16_twin(model)
    sums = {name: torch.zeros_like(p) for name, p in by_hand.named_parameters()}
    with gradients_into_grad():
        for rows in torch.split(torch.arange(len(batch)), 2):
            twin.zero_grad(set_to_none=True)
            update_module._forward_backward(
                twin, params, batch[rows], normalizers, True, False, 1.0
            )
            for name, param in twin.named_parameters():
                sums[name] += param.grad.float()
    for name, param in by_hand.named_parameters():
        param.grad = sums[name]
    torch.nn.utils.clip_grad_norm_(list(by_hand.parameters()), 1.0)
    optimizer, _ = make_optimizer(by_hand.parameters(), OptimConfig(lr=1e-3), 10)
    optimizer.step()

    optimizer, _ = make_optimizer(model.parameters(), OptimConfig(lr=1e-3), 10)
    initial = copy.deepcopy(model)
    policy_update(
        model,
        optimizer,
        params,
        batch,
        runtime=runtime,
        micro_batch_size=2,
        param_dtype=torch.bfloat16,
    )
    for (name, got), want, start in zip(
        model.named_parameters(), by_hand.parameters(), initial.parameters(), strict=True
    ):
        assert got.dtype == torch.float32
        assert not torch.equal(got, start), f"{name} did not move: the comparison proves nothing"
        assert torch.equal(got, want), name
    state = optimizer.state[next(model.parameters())]
    assert state["exp_avg"].dtype == torch.float32


def test_scoring_and_the_reference_see_the_weights_the_update_trains(tokenizer):
    """The policy's scores (PPO's old log-probs) and a bf16 reference's equal the bf16 copy's
    forward exactly, so the first ratio is 1 and the KL to π_ref starts at exactly 0."""
    model = build_tiny_model(seed=0)
    batch = rollouts(tokenizer)
    with torch.no_grad():
        expected, _ = token_logprobs(
            bf16_twin(model), batch.input_ids, batch.attention_mask, batch.response_mask
        )
    expected = expected.float() * batch.loss_mask
    settings = {"micro_batch_size": 4, "autocast": True, "param_dtype": torch.bfloat16}
    scored = batch_logprobs(model, batch, **settings) * batch.loss_mask
    reference = FrozenReference.copy_of(model, param_dtype=torch.bfloat16)
    referenced = reference.logprobs(batch, **settings) * batch.loss_mask
    assert torch.equal(scored, expected)
    assert torch.equal(referenced, expected)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    fp32 = batch_logprobs(model, batch, micro_batch_size=4, autocast=False) * batch.loss_mask
    assert not torch.equal(fp32, expected)  # bf16 weights do change the numbers...
    assert float((fp32 - expected).abs().max()) < 0.1  # ...by rounding only


def test_the_config_refuses_what_bf16_weights_do_not_support(tiny_config, tmp_path: Path):
    from oreal.config_io import ConfigError

    with pytest.raises(ConfigError, match="bf16_autocast=false"):
        tiny_config(tmp_path / "a", "model.param_dtype=bfloat16")  # the fixture's fp32 compute
    with pytest.raises(ConfigError, match="token_rm"):
        tiny_config(
            tmp_path / "b",
            "model.bf16_autocast=true",
            "model.param_dtype=bfloat16",
            "token_rm.enabled=true",
        )


def test_bf16_weights_refuse_data_parallelism(tiny_config, tmp_path: Path):
    from oreal.train.build import BuildError, build_components, check_inputs

    config = tiny_config(tmp_path / "run", "model.bf16_autocast=true", "model.param_dtype=bfloat16")
    inputs = check_inputs(config)
    try:
        with pytest.raises(BuildError, match="one process"):
            build_components(config, Runtime(world_size=2), inputs)
    finally:
        inputs.close()


def test_the_trainer_scores_and_updates_with_bf16_weights(tiny_config, tmp_path: Path, monkeypatch):
    from oreal.train import Trainer
    from oreal.train import trainer as trainer_module

    seen: list[torch.dtype] = []
    real_update = trainer_module.policy_update

    def spy(*args, **kwargs):
        seen.append(kwargs["param_dtype"])
        return real_update(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "policy_update", spy)
    config = tiny_config(
        tmp_path / "run",
        "model.bf16_autocast=true",
        "model.param_dtype=bfloat16",
        "algorithm.name=grpo",
        "algorithm.params.kl_coef=0.01",
        reward="has_digit",
    )
    trainer = Trainer(args=config)
    assert all(p.dtype == torch.bfloat16 for p in trainer.reference.module.parameters())
    record = trainer.train_step()
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())
    assert record["kl"] == 0.0  # π = π_ref at step 0, to the bit
    assert record["groups_kept"] > 0  # so the update ran
