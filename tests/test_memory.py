"""What keeps the demo's memory down computes what it computed before.

- the frozen reference stores its linear weights in bf16 when it is scored under bf16 autocast:
  its log-probs are bit-identical to an fp32 copy's, in less memory;
- the fused head skips the entropy pass when the entropy is only logged, widens the head's
  gradient block by block, and the decoder runs without autocast's weight-cast cache: the
  same numbers, bit for bit; so does gradient checkpointing;
- cached bf16 head copies, the gradients after an update and the rollout engine during one
  are freed, and a rebuilt engine samples exactly what a refreshed one samples;
- the allocator settings defer to the user's ``MALLOC_*`` variables.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers.models import tiny_qwen2
from torch import nn

from oreal.batch import TrainBatch, pad_rollouts
from oreal.models import allocator, autocast_context, direct_grads, fused_head, token_logprobs
from oreal.models import logprobs as logprobs_module
from oreal.models.loading import enable_gradient_checkpointing
from oreal.models.reference import FrozenReference
from oreal.models.tiny import build_tiny_model
from oreal.rollout import FastGenerator, SamplingParams
from oreal.train import Trainer
from oreal.train.config import OrealConfig
from oreal.train.engine import RebuildableEngine

TinyConfig = Callable[..., OrealConfig]


def rollout_batch(tokenizer, *, seed: int = 0, rows: int = 6) -> TrainBatch:
    """Two prompts, rows // 2 responses each, of different lengths (right-padded)."""
    gen = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    pairs = []
    for p in range(2):
        prompt = torch.randint(4, vocab, (5 + 4 * p,), generator=gen).tolist()
        for i in range(rows // 2):
            response = torch.randint(4, vocab, (3 + 2 * i,), generator=gen).tolist()
            pairs.append((prompt, response))
    return pad_rollouts(pairs, tokenizer.pad_token_id)


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@pytest.mark.parametrize("architecture", ["llama", "llama_tied", "qwen2"])
def test_bf16_reference_scores_exactly_as_an_fp32_one_under_autocast(tokenizer, architecture):
    if architecture == "qwen2":
        policy: nn.Module = tiny_qwen2(tokenizer, seed=3)
    else:
        policy = build_tiny_model(tokenizer, seed=1, tie_word_embeddings=architecture != "llama")
    full = FrozenReference.copy_of(policy)
    low = FrozenReference.copy_of(policy, matmul_dtype=torch.bfloat16)
    embedding = low.module.get_input_embeddings().weight
    tied = low.module.get_output_embeddings().weight is embedding
    for module in low.module.modules():
        if isinstance(module, nn.Linear):
            expected = torch.float32 if tied and module.weight is embedding else torch.bfloat16
            assert module.weight.dtype == expected
            assert module.bias is None or module.bias.dtype == expected
    assert embedding.dtype == torch.float32  # the lookup reads fp32 rows
    assert parameter_bytes(low.module) < 0.75 * parameter_bytes(full.module)
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # the policy untouched

    batch = rollout_batch(tokenizer)
    settings = {"micro_batch_size": 4, "autocast": True, "temperature": 0.7}
    assert torch.equal(low.logprobs(batch, **settings), full.logprobs(batch, **settings))
    with pytest.raises(ValueError, match="autocast"):
        low.logprobs(batch, micro_batch_size=4, autocast=False)


def test_the_build_stores_the_reference_in_bf16_only_under_autocast(tiny_config, tmp_path):
    settings = ("algorithm.name=grpo", "algorithm.params.kl_coef=0.01", "train.steps=1")
    with_bf16 = Trainer(args=tiny_config(tmp_path / "a", *settings, "model.bf16_autocast=true"))
    without = Trainer(args=tiny_config(tmp_path / "b", *settings))
    try:
        assert with_bf16.reference is not None and without.reference is not None
        assert with_bf16.reference.matmul_dtype == torch.bfloat16
        layer = with_bf16.reference.module.model.layers[0]
        assert layer.self_attn.q_proj.weight.dtype == torch.bfloat16
        assert without.reference.matmul_dtype is None
        assert all(p.dtype == torch.float32 for p in without.reference.module.parameters())
    finally:
        with_bf16.close()
        without.close()


def fused_head_run(
    *, with_entropy: bool, seed: int = 0, entropy_weight: float = 0.0, for_backward: bool = True
) -> tuple[torch.Tensor, ...]:
    """log-probs and the hidden/weight gradients of a loss on the log-probs (and, with
    ``entropy_weight``, the entropies)."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(70, 16, generator=gen).requires_grad_(True)
    weight = (torch.randn(300, 16, generator=gen) * 0.5).requires_grad_(True)
    targets = torch.randint(0, 300, (70,), generator=gen)
    coefficients = torch.randn(70, generator=gen)
    logp, entropy = fused_head.FusedHeadLogprobs.apply(
        hidden,
        weight,
        targets,
        1 / 0.7,
        with_entropy,
        32,
        torch.bfloat16,
        False,
        False,
        for_backward,
    )
    loss = (logp * coefficients).sum()
    ((loss + entropy_weight * entropy.sum()) if entropy_weight else loss).backward()
    assert hidden.grad is not None and weight.grad is not None
    return logp.detach(), hidden.grad, weight.grad


def test_an_entropy_only_logged_changes_no_gradient():
    """With the entropy computed but detached (the update logs it), the backward takes the
    entropy-free path: bit-identical to not computing the entropy at all."""
    for got, expected in zip(
        fused_head_run(with_entropy=True), fused_head_run(with_entropy=False), strict=True
    ):
        assert torch.equal(got, expected)


def test_the_head_gradient_is_widened_block_by_block_exactly(monkeypatch):
    monkeypatch.setattr(direct_grads, "_WIDEN_ROWS", 7)  # 300 rows: the last block is partial
    blocked = fused_head_run(with_entropy=False, seed=1)
    monkeypatch.setattr(direct_grads, "_WIDEN_ROWS", 10**9)  # one block: a plain widened add
    whole = fused_head_run(with_entropy=False, seed=1)
    for got, expected in zip(blocked, whole, strict=True):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("entropy_weight", [0.0, 0.4])
def test_logits_kept_for_backward_give_the_recomputed_gradients(entropy_weight):
    """Within the budget the forward's bf16 logits are kept and the backward skips their
    recompute: the same numbers bit for bit, with and without an entropy gradient."""
    runs = [
        fused_head_run(
            with_entropy=True, seed=4, entropy_weight=entropy_weight, for_backward=for_backward
        )
        for for_backward in (True, False)
    ]
    for kept, recomputed in zip(*runs, strict=True):
        assert torch.equal(kept, recomputed)


def test_logits_over_the_budget_are_recomputed(monkeypatch):
    calls = []
    real_mm = torch.mm

    def counting_mm(*args, **kwargs):
        calls.append(args[0].shape)
        return real_mm(*args, **kwargs)

    monkeypatch.setattr(torch, "mm", counting_mm)
    fused_head_run(with_entropy=False)
    kept_calls = len(calls)
    calls.clear()
    monkeypatch.setattr(fused_head, "KEPT_LOGITS_BYTES", 0)
    fused_head_run(with_entropy=False)
    # 70 rows in chunks of 32: three logits matmuls more when nothing may be kept
    assert len(calls) == kept_calls + 3


def scored(model: nn.Module, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with autocast_context("cpu", True):
        logp, entropy = token_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.response_mask, with_entropy=True
        )
    assert entropy is not None
    (logp.sum() + 0.1 * entropy.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), grads


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_uncached_decoder_forward_computes_the_same_numbers(
    tokenizer, monkeypatch, checkpointing
):
    model = build_tiny_model(tokenizer, seed=2, tie_word_embeddings=True).train()
    if checkpointing:
        enable_gradient_checkpointing(model)
    batch = rollout_batch(tokenizer, seed=3)
    logp, grads = scored(model, batch)
    monkeypatch.setattr(logprobs_module, "_uncached_autocast", lambda _: contextlib.nullcontext())
    cached_logp, cached_grads = scored(model, batch)
    assert torch.equal(logp, cached_logp)
    assert grads.keys() == cached_grads.keys()
    assert all(torch.equal(grads[name], cached_grads[name]) for name in grads)


def test_gradient_checkpointing_changes_no_gradient_under_autocast(tokenizer):
    """The demo's setting: recomputed layers give the stored layers' numbers, bit for bit."""
    model = build_tiny_model(tokenizer, seed=5, tie_word_embeddings=True).train()
    batch = rollout_batch(tokenizer, seed=4)
    logp, grads = scored(model, batch)
    enable_gradient_checkpointing(model)
    checkpointed_logp, checkpointed_grads = scored(model, batch)
    assert torch.equal(logp, checkpointed_logp)
    assert all(torch.equal(grads[name], checkpointed_grads[name]) for name in grads)


def test_cached_head_copies_are_dropped_by_a_step_and_after_reference_scoring(tokenizer):
    model = build_tiny_model(tokenizer, seed=6, tie_word_embeddings=True).train()
    head = model.get_output_embeddings().weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = rollout_batch(tokenizer, seed=5)
    scored(model, batch)
    assert hasattr(head, "_oreal_low_precision")  # shared by the micro-batches of a step
    optimizer.step()
    assert not hasattr(head, "_oreal_low_precision")  # stale: freed, not kept to the next use

    reference = FrozenReference.copy_of(model, matmul_dtype=torch.bfloat16)
    reference.logprobs(batch, micro_batch_size=3, autocast=True)
    reference_head = reference.module.get_output_embeddings().weight
    assert not hasattr(reference_head, "_oreal_low_precision")


def test_gradients_are_freed_after_an_update(tiny_config: TinyConfig, tmp_path: Path):
    trainer = Trainer(args=tiny_config(tmp_path / "run", "algorithm.name=grpo", reward="has_digit"))
    try:
        record: dict[str, float] = {}
        for _ in range(4):  # a step with a mixed group updates the policy
            record = trainer.train_step()
            if "grad_norm" in record:
                break
        assert "grad_norm" in record, "no step updated the policy, so this proves nothing"
        assert all(p.grad is None for p in trainer.policy.parameters())
    finally:
        trainer.close()


def test_a_rebuilt_engine_samples_what_a_refreshed_one_samples(tokenizer):
    model = build_tiny_model(tokenizer, seed=7, tie_word_embeddings=True)
    refreshed = FastGenerator(model, tokenizer, max_batch_size=5)
    rebuilt = RebuildableEngine(lambda: FastGenerator(model, tokenizer, max_batch_size=5))
    prompts = ["1+1=", "What is 12*3-4?", "(2+3)*4="]
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=11)
    for generator in (refreshed, rebuilt):  # both fill their KV caches once
        generator.generate(prompts, params, 3)

    with torch.no_grad():  # "an update"
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    rebuilt.release()
    assert rebuilt.released
    refreshed.sync_weights(model)
    rebuilt.sync_weights(model.state_dict())
    assert not rebuilt.released

    expected, got = refreshed.generate(prompts, params, 3), rebuilt.generate(prompts, params, 3)
    assert [o.response_ids for o in got] == [o.response_ids for o in expected]
    assert [o.logprobs for o in got] == [o.logprobs for o in expected]
    rebuilt.release()
    again = rebuilt.generate(prompts, params, 3)  # built on demand
    assert [o.response_ids for o in again] == [o.response_ids for o in expected]


def test_the_allocator_settings_defer_to_the_users(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", None)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert allocator.tune_allocator() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setattr(allocator, "_tuned", None)
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    if any(name.startswith("MALLOC_") for name in os.environ):
        pytest.skip("a MALLOC_* variable is set in this environment")
    assert allocator.tune_allocator() is on_glibc
