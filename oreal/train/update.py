"""One policy update over a rollout batch: micro-batched, exactly normalised, clipped.

The loss functions in :mod:`oreal.algorithms` divide by *global* counts; this module computes
those counts once per optimizer step (before the first backward) and then walks micro-batches,
so the gradient is the same for any ``micro_batch_size`` (tests/test_train_update.py).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from oreal.algorithms import AlgorithmParams, LossNormalizers, compute_policy_loss
from oreal.batch import TrainTensors
from oreal.models import autocast_context, token_logprobs


class OptimizerSettings(Protocol):
    """What :func:`make_optimizer` reads: ``optim`` and ``token_rm`` config sections both fit."""

    lr: float
    betas: tuple[float, float]
    weight_decay: float
    warmup_steps: int
    min_lr_ratio: float


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], settings: OptimizerSettings, total_steps: int
) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW with transformers' cosine schedule: linear warm-up s/W over ``warmup_steps`` W
    (so step 0 runs at LR 0), then cosine to ``min_lr_ratio`` x lr at ``total_steps``."""
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay
    )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=settings.warmup_steps,
        num_training_steps=total_steps,
        min_lr_rate=settings.min_lr_ratio,
    )
    return optimizer, scheduler


def advance_schedule(scheduler: LambdaLR) -> None:
    """Advance the LR schedule by one training step, also a step that took no optimizer step
    (all groups filtered out, or a policy-frozen RM warm-up step: the release counts those)."""
    with warnings.catch_warnings():
        # torch warns when the schedule steps without an optimizer step since the last one.
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        scheduler.step()


@dataclass
class UpdateBatch:
    """The kept sequences of one step, as tensors the loss needs (rows aligned)."""

    tensors: TrainTensors
    advantages: Tensor
    positive: Tensor
    pass_rate: Tensor
    token_weights: Tensor | None = None
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None

    def __len__(self) -> int:
        return len(self.tensors)

    def rows(self, index: Tensor) -> UpdateBatch:
        tensors = self.tensors[index]
        width = tensors.loss_mask.shape[1]

        def cut(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[index][:, :width]

        return UpdateBatch(
            tensors,
            self.advantages[index],
            self.positive[index],
            self.pass_rate[index],
            cut(self.token_weights),
            cut(self.old_logprobs),
            cut(self.ref_logprobs),
        )


@torch.no_grad()
def score_logprobs(
    model: torch.nn.Module,
    tensors: TrainTensors,
    *,
    micro_batch_size: int,
    autocast: bool,
    temperature: float = 1.0,
) -> Tensor:
    """Log-probs ``[B, R]`` of the response tokens under ``model`` (no gradient), micro-batched."""
    device = tensors.input_ids.device
    out = torch.zeros(tensors.loss_mask.shape, dtype=torch.float32, device=device)
    for start in range(0, len(tensors), micro_batch_size):
        part = tensors[start : start + micro_batch_size]
        with autocast_context(device, autocast):
            logprobs, _ = token_logprobs(
                model,
                part.input_ids,
                part.attention_mask,
                part.response_mask,
                temperature=temperature,
            )
        out[start : start + micro_batch_size, : logprobs.shape[1]] = logprobs.float()
    return out


def policy_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    params: AlgorithmParams,
    batch: UpdateBatch,
    *,
    micro_batch_size: int,
    epochs: int = 1,
    minibatches: int = 1,
    grad_clip: float | None = 1.0,
    autocast: bool = True,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """``epochs`` x ``minibatches`` optimizer steps over ``batch``; returns averaged log values.

    With more than one optimizer step per batch the ratio to the rollout policy matters, so
    ``batch.old_logprobs`` must be set (PPO); with exactly one it may be None (ratio 1 in value,
    the single-update regime of OREAL's release and 1-shot RLVR).
    """
    if epochs * minibatches > 1 and batch.old_logprobs is None:
        raise ValueError("several optimizer steps per rollout batch need old_logprobs")
    device = batch.tensors.input_ids.device
    trainable = [p for p in model.parameters() if p.requires_grad]
    totals: dict[str, float] = defaultdict(float)
    optimizer_steps = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(batch), generator=generator) if minibatches > 1 else None
        for chunk in _split(len(batch), minibatches, order):
            minibatch = batch.rows(chunk)
            normalizers = LossNormalizers.from_masks(
                minibatch.tensors.loss_mask, minibatch.positive, max_len=max_new_tokens
            )
            optimizer.zero_grad(set_to_none=True)
            for start in range(0, len(minibatch), micro_batch_size):
                micro = minibatch.rows(
                    torch.arange(start, min(start + micro_batch_size, len(minibatch)))
                )
                tensors = micro.tensors
                with autocast_context(device, autocast):
                    logprobs, entropy = token_logprobs(
                        model,
                        tensors.input_ids,
                        tensors.attention_mask,
                        tensors.response_mask,
                        with_entropy=True,
                        temperature=temperature,
                    )
                if params.entropy_coef == 0 and entropy is not None:
                    entropy = entropy.detach()  # logged only: keep it out of the graph
                loss, parts = compute_policy_loss(
                    params,
                    logprobs=logprobs.float(),
                    response_mask=tensors.loss_mask,
                    advantages=micro.advantages,
                    normalizers=normalizers,
                    old_logprobs=micro.old_logprobs,
                    ref_logprobs=micro.ref_logprobs,
                    entropy=None if entropy is None else entropy.float(),
                    token_weights=micro.token_weights,
                    positive=micro.positive,
                    pass_rate=micro.pass_rate,
                )
                loss.backward()
                for key, value in parts.items():
                    totals[key] += float(value)
            clip = grad_clip if grad_clip is not None else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, clip)
            totals["grad_norm"] += float(grad_norm)
            optimizer.step()
            optimizer_steps += 1
    # Parts are sums over micro-batches of one optimizer step: average over optimizer steps.
    return {key: value / optimizer_steps for key, value in totals.items()}


def _split(size: int, parts: int, order: Tensor | None) -> list[Tensor]:
    index = order if order is not None else torch.arange(size)
    return [chunk for chunk in torch.tensor_split(index, min(parts, size)) if len(chunk)]
