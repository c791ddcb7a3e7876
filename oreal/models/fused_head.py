"""The output head, log-softmax and entropy fused into one chunked autograd function.

:func:`oreal.models.token_logprobs` routes a plain bias-free ``nn.Linear`` head (no logit
soft-capping) through :class:`FusedHeadLogprobs`: the same numbers as the generic chunked path
under autocast, with the head weight cast to the compute dtype once per optimizer step and a
hand-written backward. The allocator settings that keep its large per-chunk buffers from being
page-faulted in anew at every chunk are in :mod:`oreal.models.allocator`.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["FusedHeadLogprobs", "release_low_precision_copies", "weights_generation"]

#: Bumped after every ``torch.optim.Optimizer.step`` in the process (a global step hook).
#: Fused optimizers (``AdamW(fused=True)``, on CPU and CUDA) update parameters without bumping
#: their autograd ``_version``, so the version alone cannot tell that a weight changed.
_generation = 0
_hook_installed = False
#: Weights that carry a cached low-precision copy (:func:`low_precision`).
_cached: weakref.WeakSet[torch.Tensor] = weakref.WeakSet()


def _bump_generation(*_: Any) -> None:
    global _generation
    _generation += 1
    release_low_precision_copies()  # stale now: no call could reuse them


def release_low_precision_copies() -> None:
    """Drop every cached low-precision weight copy (54 MiB per SmolLM2 head). Each one is
    stale after the next optimizer step anyway (its key holds :func:`weights_generation`),
    so a holder that is done for this step (the reference after scoring) loses nothing."""
    for weight in list(_cached):
        if hasattr(weight, "_oreal_low_precision"):
            del weight._oreal_low_precision
    _cached.clear()


def weights_generation() -> int:
    """How many optimizer steps this process has taken (any optimizer; installs the hook)."""
    global _hook_installed
    if not _hook_installed:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(_bump_generation)
        _hook_installed = True
    return _generation


def scaled_logits(hidden: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """fp32 logits of one chunk as the model's forward makes them: the matmul in the compute
    dtype (its output rounded to it, as under autocast), then ``* scale`` in fp32."""
    logits = (hidden @ weight.t()).float()
    return logits.mul_(scale) if scale != 1.0 else logits


def low_precision(weight: torch.Tensor, dtype: torch.dtype, *, reuse: bool = True) -> torch.Tensor:
    """``weight`` in ``dtype``, cast once per weight version (49152 x 576 for SmolLM2's head):
    the micro-batches between two optimizer steps share one cast instead of one per call. Any
    optimizer step drops every cached copy (:func:`release_low_precision_copies`), so a
    frozen reference's head too is cast once per step.

    The cached copy is keyed by the storage, the autograd version (in-place ``copy_``,
    ``load_state_dict``, foreach optimizers) and :func:`weights_generation` (any optimizer
    step, fused ones included). Writes that none of these see (through ``.data``, or FSDP's
    all-gathers into a reused buffer) need ``reuse=False``, which casts afresh.
    """
    if weight.dtype == dtype:
        return weight.detach()
    if not reuse:
        return weight.detach().to(dtype)
    key = (weight.data_ptr(), weight._version, weights_generation(), dtype)
    cached = getattr(weight, "_oreal_low_precision", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    low = weight.detach().to(dtype)
    weight._oreal_low_precision = (key, low)  # type: ignore[attr-defined]
    _cached.add(weight)
    return low


class FusedHeadLogprobs(torch.autograd.Function):
    """``lm_head`` + log-softmax (+ entropy) over ``[M, H]`` hidden states, chunk by chunk.

    The numbers of the generic chunked path (``oreal.models.logprobs._chunk_stats``) under
    autocast and checkpointing (bf16 matmuls with bf16 outputs, fp32 softmax statistics, bf16
    gradients into the matmuls), with less work:
    the weight is cast once per optimizer step instead of once per chunk and recompute; the
    backward recomputes a chunk's logits z once and writes d(loss)/dz straight in the compute
    dtype,

        g_logp * (onehot - p) + g_entropy * p * (E_p[z] - z),

    in two or three passes over the chunk instead of autograd's walk through logsumexp,
    gather, exp and the entropy sum; the weight's gradient is summed over chunks in fp32.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        scale: float,
        with_entropy: bool,
        chunk_size: int,
        compute_dtype: torch.dtype,
        reuse: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low_hidden = hidden.detach().to(compute_dtype)
        low_weight = low_precision(weight, compute_dtype, reuse=reuse)
        count = hidden.shape[0]
        logp = torch.empty(count, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logp)
        mean_logit = torch.empty_like(logp) if with_entropy else logp.new_empty(0)
        for lo in range(0, count, chunk_size):
            hi = min(lo + chunk_size, count)
            logits = scaled_logits(low_hidden[lo:hi], low_weight, scale)
            # logsumexp by hand: its unnormalised exponentials also give E_p[z] (one dot).
            top = logits.amax(dim=-1)
            target_logits = logits.gather(-1, targets[lo:hi, None]).squeeze(-1)
            # Without the entropy the logits are dead once exponentiated: in place, one fp32
            # chunk instead of two.
            shifted = torch.sub(logits, top[:, None]) if with_entropy else logits.sub_(top[:, None])
            unnormalised = shifted.exp_()
            total = unnormalised.sum(dim=-1)
            chunk_lse = top + total.log()
            lse[lo:hi] = chunk_lse
            logp[lo:hi] = target_logits - chunk_lse
            if with_entropy:
                mean_logit[lo:hi] = torch.linalg.vecdot(unnormalised, logits) / total
            del logits, shifted, unnormalised  # before the next chunk's are made
        entropy = lse - mean_logit if with_entropy else logp.new_zeros(count)
        ctx.save_for_backward(low_hidden, low_weight, targets, lse, mean_logit)
        ctx.settings = (scale, chunk_size, hidden.dtype, weight.dtype)
        # An entropy that is only logged (detached) then reaches backward as None instead of
        # a tensor of zeros, and its pass over the chunk is skipped (same numbers, up to the
        # sign of zero gradients).
        ctx.set_materialize_grads(False)
        if not with_entropy:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_logp: torch.Tensor | None, grad_entropy: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        low_hidden, low_weight, targets, lse, mean_logit = ctx.saved_tensors
        scale, chunk_size, hidden_dtype, weight_dtype = ctx.settings
        count, dtype = low_hidden.shape[0], low_hidden.dtype
        if grad_logp is None:
            grad_logp = lse.new_zeros(count)
        use_entropy = grad_entropy is not None and mean_logit.numel() > 0
        # A frozen head (LoRA) or frozen hidden states need no gradient: skip its matmul.
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(low_hidden) if need_hidden else None
        grad_weight: torch.Tensor | None = None
        for lo in range(0, count, chunk_size):
            hi = min(lo + chunk_size, count)
            logits = scaled_logits(low_hidden[lo:hi], low_weight, scale)
            # Without the entropy term the logits are not needed once p is formed: p takes
            # their buffer (one fp32 chunk, 100 MB for SmolLM2, instead of two).
            probs = (
                torch.sub(logits, lse[lo:hi, None]).exp_()
                if use_entropy
                else logits.sub_(lse[lo:hi, None]).exp_()
            )
            # d(loss)/d(raw logits) = scale * d(loss)/dz; the factor goes into the coefficients.
            g = grad_logp[lo:hi, None] * scale
            rows = torch.arange(hi - lo, device=probs.device)
            target_probs = probs[rows, targets[lo:hi]]
            if use_entropy:
                assert grad_entropy is not None
                g_entropy = grad_entropy[lo:hi, None] * scale
                # p * (g_ent * (E[z] - z) - g), the coefficient formed in place of the logits
                coef = logits.mul_(-g_entropy).add_(g_entropy * mean_logit[lo:hi, None] - g)
                target_coef = coef[rows, targets[lo:hi]]
                low_grad = torch.mul(probs, coef, out=torch.empty_like(probs, dtype=dtype))
                del coef  # the logits' buffer
            else:
                target_coef = -g[:, 0]
                low_grad = torch.mul(probs, -g, out=torch.empty_like(probs, dtype=dtype))
            # The one-hot term, added in fp32 before the single rounding to the compute dtype.
            low_grad[rows, targets[lo:hi]] = (target_probs * target_coef + g[:, 0]).to(dtype)
            # The fp32 chunk buffers are dead now: freed before the weight gradient's buffers
            # are made, and before the next chunk's (the backward's memory peak is here).
            del probs, logits
            if grad_hidden is not None:
                grad_hidden[lo:hi] = low_grad @ low_weight
            if need_weight:
                chunk_weight_grad = low_grad.t() @ low_hidden[lo:hi]
                if grad_weight is None:
                    grad_weight = chunk_weight_grad.to(torch.float32)
                else:
                    _add_widened(grad_weight, chunk_weight_grad)
                del chunk_weight_grad
            del low_grad
        if need_weight and grad_weight is None:  # no rows
            grad_weight = low_weight.new_zeros(low_weight.shape, dtype=torch.float32)
        return (
            grad_hidden.to(hidden_dtype) if grad_hidden is not None else None,
            grad_weight.to(weight_dtype) if grad_weight is not None else None,
            *(None,) * 6,
        )


#: Rows of the head's weight gradient widened to fp32 at a time by :func:`_add_widened`.
_WIDEN_ROWS = 4096


def _add_widened(total: torch.Tensor, part: torch.Tensor) -> None:
    """``total += part.float()`` without an fp32 copy of all of ``part``: block by block.

    A mixed-dtype ``add_`` takes a slow, unvectorised path, so ``part`` is widened first, but
    a whole fp32 copy of a head gradient is 113 MB for SmolLM2 (49152 x 576), live next to the
    sum at the moment the update's memory peaks. The same elementwise sum, in blocks of rows.
    """
    for start in range(0, part.shape[0], _WIDEN_ROWS):
        total[start : start + _WIDEN_ROWS] += part[start : start + _WIDEN_ROWS].to(total.dtype)
