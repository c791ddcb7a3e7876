"""One policy update over a step's kept rows: micro-batched, exactly normalised, clipped.

The losses in :mod:`oreal.algorithms` divide by *global* counts; this module counts them once
per optimizer step, before the first backward (all-reduced over data-parallel ranks), then
walks micro-batches, so the update is the same for any ``micro_batch_size`` and any number of
ranks. Under data parallelism every rank runs the same number of forward/backward passes
(:meth:`oreal.runtime.Runtime.lockstep`); a rank out of rows runs a placeholder whose loss is 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import Tensor

from oreal.algorithms import (
    AlgorithmParams,
    LossNormalizers,
    compute_policy_loss,
    rows_without_gradient,
)
from oreal.batch import TrainBatch
from oreal.models import autocast_context, token_logprobs
from oreal.models.direct_grads import gradients_into_grad
from oreal.models.precision import working_weights
from oreal.runtime import Runtime, full_value
from oreal.seeding import Purpose, derive_seed
from oreal.threads import shared_chooser

__all__ = ["global_normalizers", "policy_update"]


def global_normalizers(
    batch: TrainBatch, runtime: Runtime, *, max_len: int | None
) -> LossNormalizers:
    """The step's N, N+, N-, B over every rank (LossNormalizers with ``dp_world_size`` R)."""
    local = LossNormalizers.from_masks(batch.loss_mask, batch.positive, max_len=max_len)
    counts = runtime.all_reduce(local.to_tensor())
    return LossNormalizers.from_tensor(counts, max_len=max_len, dp_world_size=runtime.world_size)


def policy_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    params: AlgorithmParams,
    batch: TrainBatch,
    *,
    runtime: Runtime,
    micro_batch_size: int,
    epochs: int = 1,
    minibatches: int = 1,
    grad_clip: float | None = 1.0,
    autocast: bool = True,
    param_dtype: torch.dtype = torch.float32,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
    seed: int = 0,
    step: int = 0,
) -> dict[str, float]:
    """``epochs`` x ``minibatches`` optimizer steps over this rank's ``batch``.

    With more than one optimizer step per batch the ratio to the rollout policy matters, so
    ``batch.old_logprobs`` must be set (PPO); with exactly one it may be None (ratio 1 in value,
    the single-update regime of OREAL's release and 1-shot RLVR). Mini-batches are a seeded
    shuffle of this rank's rows, keyed by (seed, step, epoch, rank). Returns the step's logged
    values: loss parts summed over micro-batches and ranks, averaged over optimizer steps.

    ``param_dtype=torch.bfloat16`` runs each optimizer step's forwards and backwards on bf16
    copies of the fp32 parameters, which stay the master weights (:mod:`oreal.models.precision`).
    """
    if epochs * minibatches > 1 and batch.old_logprobs is None:
        raise ValueError("several optimizer steps per rollout batch need old_logprobs")
    trainable = [p for p in model.parameters() if p.requires_grad]
    totals: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
    grad_norms: list[float] = []
    optimizer_steps = skipped = 0
    model.train()
    # Thread count per micro-batch chosen by timing (oreal/threads.py): fewer threads when
    # another process holds a core. Gradients were measured not to change with it.
    threads = shared_chooser("policy_update", trial_rounds=1, period=32)
    autocast = autocast and param_dtype == torch.float32  # bf16 weights: nothing to cast
    for epoch in range(epochs):
        order = torch.arange(len(batch))
        if minibatches > 1:
            shuffle = torch.Generator().manual_seed(
                derive_seed(seed, Purpose.TRAIN_STEP, step, epoch, runtime.rank)
            )
            order = torch.randperm(len(batch), generator=shuffle)
        for chunk in torch.tensor_split(order, minibatches):
            minibatch = batch[chunk]
            normalizers = global_normalizers(minibatch, runtime, max_len=max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            threads.begin(trial=False)
            forward_only = False
            try:
                # The head's and the embedding's gradients go straight into .grad
                # (oreal.models.direct_grads): no vocabulary-sized gradient per micro-batch.
                with gradients_into_grad(), working_weights(model, param_dtype) as working:
                    micro_batches = _micro_batches(minibatch, params, runtime, micro_batch_size)
                    for rows, needs_grad in micro_batches:
                        # A placeholder has no loss token: its loss and parts are exactly 0.
                        part = minibatch[rows] if rows is not None else batch.placeholder()
                        parts = threads.run(
                            _forward_backward,
                            *(model, params, part, normalizers, needs_grad, autocast, temperature),
                            work=float(part.attention_mask.sum()),
                            timed=needs_grad,
                        )
                        if working is not None and needs_grad:
                            working.widen_grads()  # each micro-batch's gradient summed in fp32
                        forward_only |= not needs_grad
                        for key, value in parts.items():
                            totals[key] += float(value)
            finally:
                threads.restore()
            for param in trainable if forward_only else ():
                # Rows with no gradient may be all there was: AdamW must still see a zero
                # gradient (its moments decay and it steps) as it would after their backward.
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
            clip = grad_clip if grad_clip is not None else float("inf")
            norm = full_value(torch.nn.utils.clip_grad_norm_(trainable, clip))
            optimizer_steps += 1
            if not math.isfinite(norm):  # never let a NaN or inf into the weights
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            grad_norms.append(norm)
            optimizer.step()
    names = sorted(totals)
    summed = runtime.all_reduce(torch.stack([totals[k] for k in names])) if names else None
    out = {k: float(summed[i]) / optimizer_steps for i, k in enumerate(names)} if names else {}
    if grad_norms:
        out["grad_norm"] = sum(grad_norms) / len(grad_norms)
    if skipped:
        out["skipped_nonfinite_updates"] = float(skipped)
    return out


def _micro_batches(
    minibatch: TrainBatch, params: AlgorithmParams, runtime: Runtime, size: int
) -> Iterator[tuple[Tensor | None, bool]]:
    """Row indices of each micro-batch and whether it needs a backward.

    On one process, rows whose loss is exactly 0 with no gradient (GRPO's all-correct and
    all-wrong groups without KL or entropy terms, :func:`rows_without_gradient`) go last, in
    micro-batches of their own that run forward only (their logged parts, e.g. the entropy,
    are still counted; their loss is 0). Under data parallelism every rank runs the same
    forward/backward passes (sharded parameters gather in each), so nothing is skipped.
    """
    if runtime.world_size > 1:
        for rows in runtime.lockstep(len(minibatch), size):
            yield rows, True
        return
    inert = rows_without_gradient(params, minibatch.advantages)
    for rows_of_kind, needs_grad in ((~inert, True), (inert, False)):
        indices = rows_of_kind.nonzero().squeeze(1)
        for rows in torch.split(indices, size) if len(indices) else ():
            yield rows, needs_grad


def _forward_backward(
    model: torch.nn.Module,
    params: AlgorithmParams,
    part: TrainBatch,
    normalizers: LossNormalizers,
    needs_grad: bool,
    autocast: bool,
    temperature: float,
) -> dict[str, Tensor]:
    """One micro-batch's loss parts; its gradient is accumulated when ``needs_grad``."""
    with torch.set_grad_enabled(needs_grad), autocast_context(part.input_ids.device, autocast):
        logprobs, entropy = token_logprobs(
            model,
            part.input_ids,
            part.attention_mask,
            part.response_mask,
            with_entropy=True,
            temperature=temperature,
        )
    with torch.set_grad_enabled(needs_grad):
        if params.entropy_coef == 0 and entropy is not None:
            entropy = entropy.detach()  # logged only: keep it out of the graph
        loss, parts = compute_policy_loss(
            params,
            logprobs=logprobs.float(),
            response_mask=part.loss_mask,
            advantages=part.advantages,
            normalizers=normalizers,
            old_logprobs=part.old_logprobs,
            ref_logprobs=part.ref_logprobs,
            entropy=None if entropy is None else entropy.float(),
            token_weights=part.token_weights,
            positive=part.positive,
            pass_rate=part.pass_rate,
        )
        if needs_grad:
            loss.backward()
    return parts
