"""bf16 working copies of fp32 parameters (oreal.models.precision): the update trains the
fp32 masters with the bf16 copies' gradients summed in fp32, scoring and the reference see
the same bf16 weights, and the fp32 parameters are what everything else sees."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from oreal.algorithms import algorithm_params
from oreal.batch import TrainBatch, pad_rollouts
from oreal.models import token_logprobs
from oreal.models.direct_grads import add_into_grad, embed, gradients_into_grad
from oreal.models.loading import enable_gradient_checkpointing
from oreal.models.logprobs import batch_logprobs
from oreal.models.precision import Bf16Parameters, working_weights
from oreal.models.reference import FrozenReference
from oreal.models.tiny import build_tiny_model
from oreal.optim import make_optimizer
from oreal.runtime import Runtime
from oreal.train import Trainer
from oreal.train import trainer as trainer_module
from oreal.train import update as update_module
from oreal.train.build import BuildError, build_components, check_inputs
from oreal.train.config import OptimConfig, OrealConfig
from oreal.train.update import global_normalizers, policy_update

TinyConfig = Callable[..., OrealConfig]  # the conftest fixture's factory
BF16 = ("model.bf16_autocast=true", "model.param_dtype=bfloat16")


def bf16_twin(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters (not buffers) are stored in bf16."""
    twin = copy.deepcopy(model)
    for param in twin.parameters():
        param.data = param.data.to(torch.bfloat16)
    return twin


def rollouts(tokenizer: PreTrainedTokenizerBase, rows: int = 6, seed: int = 1) -> TrainBatch:
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


def test_inside_the_block_parameters_are_bf16_and_outside_the_fp32_ones_come_back(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
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


def test_an_error_inside_the_block_restores_the_fp32_parameters_and_entry_gradients(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    model = build_tiny_model(seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    entry = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    for name, param in model.named_parameters():
        param.grad = entry[name].clone()
    with pytest.raises(RuntimeError, match="boom"), Bf16Parameters(model) as working:
        loss_backward(model, rollouts(tokenizer), 0)
        working.widen_grads()  # the sums have moved away from the entry gradients
        raise RuntimeError("boom")
    for name, param in model.named_parameters():
        assert param.dtype == torch.float32 and torch.equal(param.detach(), before[name])
        assert torch.equal(param.grad, entry[name]), name
        assert not hasattr(param, "main_grad")


def test_a_failure_while_entering_restores_the_parameters_cast_so_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = build_tiny_model(seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    real_to = torch.Tensor.to
    calls = 0

    def failing_to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError("out of memory")
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", failing_to)
    with pytest.raises(MemoryError), Bf16Parameters(model):
        pass
    monkeypatch.undo()
    for param, value in zip(model.parameters(), before, strict=True):
        assert param.dtype == torch.float32 and torch.equal(param.detach(), value)
        assert param.grad is None and not hasattr(param, "main_grad")


def test_a_frozen_weight_is_cast_once_and_again_after_it_changes() -> None:
    """LoRA's frozen base keeps its bf16 copy across steps; an in-place write to the frozen
    weight (a load) gives it a new copy."""
    model = build_tiny_model(seed=0)
    frozen = next(model.parameters())
    frozen.requires_grad_(False)

    def working_storage() -> tuple[int, torch.Tensor]:
        with Bf16Parameters(model):
            return frozen.data_ptr(), frozen.detach().clone()

    first, second = working_storage(), working_storage()
    assert first[0] == second[0]  # the same bf16 copy
    with torch.no_grad():
        frozen.add_(1.0)
    third = working_storage()
    assert third[0] != first[0]
    assert torch.equal(third[1], frozen.detach().to(torch.bfloat16))
    frozen.data = torch.zeros_like(frozen.data)  # replaced, not written: _version stays
    assert torch.equal(working_storage()[1], torch.zeros_like(third[1]))
    assert frozen.dtype == torch.float32
    frozen.requires_grad_(True)  # unfrozen: cast afresh, the kept copy dropped
    working_storage()
    assert "_oreal_working_copy" not in frozen.__dict__


def test_a_failure_while_widening_on_exit_still_restores(
    tokenizer: PreTrainedTokenizerBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_tiny_model(seed=0)
    before = [p.detach().clone() for p in model.parameters()]

    def out_of_memory(self: Bf16Parameters) -> None:
        raise MemoryError("widening")

    with pytest.raises(MemoryError), Bf16Parameters(model):
        loss_backward(model, rollouts(tokenizer), 0)
        monkeypatch.setattr(Bf16Parameters, "widen_grads", out_of_memory)
    for param, value in zip(model.parameters(), before, strict=True):
        assert param.dtype == torch.float32 and torch.equal(param.detach(), value)
        assert param.grad is None and not hasattr(param, "main_grad")


def test_direct_gradients_are_summed_in_main_grad_in_fp32() -> None:
    """Within the block the head's chunks and the embedding's rows add into ``main_grad`` in
    fp32, not into a bf16 ``.grad`` (oreal.models.direct_grads)."""
    gen = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(10, 4, generator=gen).to(torch.bfloat16))
    weight.main_grad = None  # type: ignore[attr-defined]
    parts = [torch.randn(10, 4, generator=gen).to(torch.bfloat16) for _ in range(3)]
    for part in parts:
        add_into_grad(weight, part)
    expected = parts[0].float() + parts[1].float() + parts[2].float()
    assert weight.grad is None
    assert weight.main_grad.dtype == torch.float32  # type: ignore[attr-defined]
    assert torch.equal(weight.main_grad, expected)  # type: ignore[attr-defined]

    table = nn.Embedding(10, 4).to(torch.bfloat16)
    table.weight.main_grad = None  # type: ignore[attr-defined]
    ids = torch.tensor([[1, 3, 3, 7]])
    upstream = torch.randn(1, 4, 4, generator=gen).to(torch.bfloat16)
    with gradients_into_grad():
        out = embed(table, ids)
    assert out is not None
    out.backward(upstream)
    want = torch.zeros(10, 4).index_add_(0, ids.flatten(), upstream.reshape(-1, 4).float())
    assert table.weight.grad is None
    assert torch.equal(table.weight.main_grad, want)  # type: ignore[attr-defined]


def test_working_weights_refuses_other_dtypes() -> None:
    with pytest.raises(ValueError, match="float16"):
        working_weights(build_tiny_model(seed=0), torch.float16)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "grad_checkpointing"])
def test_the_update_steps_the_fp32_masters_with_the_bf16_gradients_summed_in_fp32(
    tokenizer: PreTrainedTokenizerBase, checkpointing: bool
) -> None:
    """policy_update(param_dtype=bf16) equals, bit for bit, this recipe done by hand: each
    micro-batch's forward/backward on a bf16 copy, every gradient summed in an fp32
    ``main_grad`` (the direct head/embedding path adds into it, autograd's bf16 gradients
    are widened into it), clipped, and AdamW stepping the fp32 weights."""
    model = build_tiny_model(seed=0)
    if checkpointing:  # the recompute in backward must see the bf16 copies too
        enable_gradient_checkpointing(model)
    by_hand = copy.deepcopy(model)
    batch = rollouts(tokenizer)
    params = algorithm_params("rloo", kl_coef=0.0)
    runtime = Runtime()
    normalizers = global_normalizers(batch, runtime, max_len=None)

    twin = bf16_twin(model)
    twin.train()
    for param in twin.parameters():
        param.main_grad = None  # type: ignore[attr-defined]
    with gradients_into_grad():
        for rows in torch.split(torch.arange(len(batch)), 2):
            update_module._forward_backward(
                twin, params, batch[rows], normalizers, True, False, 1.0
            )
            for param in twin.parameters():
                if param.grad is not None:
                    total = param.main_grad  # type: ignore[attr-defined]
                    widened = param.grad.float()
                    param.main_grad = widened if total is None else total + widened  # type: ignore[attr-defined]
                    param.grad = None
    for param, source in zip(by_hand.parameters(), twin.parameters(), strict=True):
        param.grad = source.main_grad  # type: ignore[attr-defined]
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
        assert got.dtype == torch.float32 and not hasattr(got, "main_grad")
        assert not torch.equal(got, start), f"{name} did not move: the comparison proves nothing"
        assert torch.equal(got, want), name
    state = optimizer.state[next(model.parameters())]
    assert state["exp_avg"].dtype == torch.float32


def test_several_steps_per_batch_and_a_non_finite_step_with_bf16_weights(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """PPO-style reuse (2 epochs x 2 mini-batches) casts afresh for each of the 4 optimizer
    steps and ends where fp32 weights end, up to bf16 rounding; a NaN advantage skips its
    step and leaves the fp32 weights as they were."""
    batch = rollouts(tokenizer, rows=8)
    params = algorithm_params("grpo", kl_coef=0.0)
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = build_tiny_model(seed=0)
        batch.old_logprobs = batch_logprobs(
            model, batch, micro_batch_size=4, autocast=False, param_dtype=dtype
        )
        optimizer, _ = make_optimizer(model.parameters(), OptimConfig(lr=1e-3), 10)
        settings = {"epochs": 2, "minibatches": 2, "autocast": False, "param_dtype": dtype}
        policy_update(
            model, optimizer, params, batch, runtime=Runtime(), micro_batch_size=2, **settings
        )
        steps = {int(state["step"]) for state in optimizer.state.values()}
        assert steps == {4}
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs[dtype] = torch.cat([p.detach().flatten() for p in model.parameters()])
    start = torch.cat([p.detach().flatten() for p in build_tiny_model(seed=0).parameters()])
    moved = runs[torch.float32] - start
    gap = runs[torch.bfloat16] - runs[torch.float32]
    assert float(moved.norm()) > 0
    assert float(gap.norm()) < 0.1 * float(moved.norm())

    model = build_tiny_model(seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer, _ = make_optimizer(model.parameters(), OptimConfig(lr=1e-3), 10)
    broken = rollouts(tokenizer)
    broken.advantages[0] = float("nan")
    logged = policy_update(
        model, optimizer, params, broken, runtime=Runtime(), micro_batch_size=2,
        param_dtype=torch.bfloat16,
    )  # fmt: skip
    assert logged["skipped_nonfinite_updates"] == 1.0
    for param, value in zip(model.parameters(), before, strict=True):
        assert param.dtype == torch.float32 and torch.equal(param.detach(), value)


def test_scoring_and_the_reference_see_the_weights_the_update_trains(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """The policy's scores (PPO's old log-probs) and a bf16 reference's equal the bf16 copy's
    forward exactly: PPO's old log-probs come from the weights the update computes with, and
    the KL to π_ref starts at exactly 0."""
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


def test_the_config_refuses_what_bf16_weights_do_not_support(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
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


def test_bf16_weights_refuse_data_parallelism(tiny_config: TinyConfig, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", *BF16)
    inputs = check_inputs(config)
    try:
        with pytest.raises(BuildError, match="one process"):
            build_components(config, Runtime(world_size=2), inputs)
    finally:
        inputs.close()


def test_the_trainer_scores_and_updates_with_bf16_weights(
    tiny_config: TinyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.dtype] = []
    real_update = trainer_module.policy_update

    def spy(*args: Any, **kwargs: Any) -> dict[str, float]:
        seen.append(kwargs["param_dtype"])
        return real_update(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "policy_update", spy)
    config = tiny_config(
        tmp_path / "run",
        *BF16,
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
