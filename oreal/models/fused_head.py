"""The output head, log-softmax and entropy fused into one chunked autograd function.

:func:`oreal.models.token_logprobs` routes a plain bias-free ``nn.Linear`` head (no logit
soft-capping) through :class:`FusedHeadLogprobs`: the same numbers as the generic chunked path
under autocast, with the head weight cast to the compute dtype once per optimizer step and a
hand-written backward whose weight gradient, during an update, goes straight into
``weight.grad`` (:mod:`oreal.models.direct_grads`).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from oreal.models.direct_grads import add_into_grad, add_widened

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


#: Most bytes of low-precision logits the forward keeps for the backward (which otherwise
#: recomputes them, one ``[M, H] x [H, V]`` matmul): a micro-batch of 16 demo rollouts
#: (653 scored tokens x 49152 in docs/performance.md, "Memory") is 64 MB, about what the
#: chunk buffer it replaces (512 rows, 48 MiB) costs anyway.
KEPT_LOGITS_BYTES = 256 * 1024 * 1024

#: Rows of a chunk's logits taken to fp32 at a time: 32 x 49152 x 4 bytes = 6 MB for SmolLM2,
#: small enough to stay in cache across the passes over them and to come from the heap
#: without page faults (oreal.models.allocator maps blocks of 32 MB and more afresh).
_BLOCK_ROWS = 32


class FusedHeadLogprobs(torch.autograd.Function):
    """``lm_head`` + log-softmax (+ entropy) over ``[M, H]`` hidden states, chunk by chunk.

    The numbers of the generic chunked path (``oreal.models.logprobs._chunk_stats``) under
    autocast and checkpointing (bf16 matmuls with bf16 outputs, fp32 softmax statistics, bf16
    gradients into the matmuls), with less work:
    the weight is cast once per optimizer step instead of once per chunk and recompute; the
    backward recomputes a chunk's logits z once and writes d(loss)/dz straight in the compute
    dtype,

        g_logp * (onehot - p) + g_entropy * p * (E_p[z] - z),

    over the chunk's low-precision logits in place, instead of autograd's walk through
    logsumexp, gather, exp and the entropy sum; the weight's gradient is summed over chunks in
    fp32, into ``weight.grad`` itself (or an fp32 ``main_grad``) when ``into_grad``
    (:mod:`oreal.models.direct_grads`).
    The fp32 work runs ``_BLOCK_ROWS`` rows at a time on two small scratch buffers: no
    ``[chunk, V]`` fp32 tensor exists (each one was a fresh 100 MB mapping for SmolLM2,
    page-faulted in at every pass), and a block stays in cache across its passes.
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
        into_grad: bool = False,
        for_backward: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low_hidden = hidden.detach().to(compute_dtype)
        low_weight = low_precision(weight, compute_dtype, reuse=reuse)
        count = hidden.shape[0]
        logp = torch.empty(count, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logp)
        mean_logit = torch.empty_like(logp) if with_entropy else logp.new_empty(0)
        # A backward will follow: keep every chunk's logits for it if they fit the budget.
        keep = (
            for_backward and count * low_weight.shape[0] * low_weight.itemsize <= KEPT_LOGITS_BYTES
        )
        rows = count if keep else chunk_size
        chunk = _chunk_buffer(low_hidden, low_weight, rows)
        scratch = _Scratch(low_weight)
        for lo in range(0, count, chunk_size):
            hi = min(lo + chunk_size, count)
            out = chunk[lo:hi] if keep else chunk[: hi - lo]
            low_logits = torch.mm(low_hidden[lo:hi], low_weight.t(), out=out)
            for start in range(lo, hi, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, hi)
                logits = scratch.logits(low_logits[start - lo : stop - lo], scale)
                # logsumexp by hand: its unnormalised exponentials also give E_p[z] (one dot).
                top = logits.amax(dim=-1)
                target_logits = logits.gather(-1, targets[start:stop, None]).squeeze(-1)
                if with_entropy:
                    unnormalised = scratch.second(torch.sub, logits, top[:, None]).exp_()
                else:  # the logits are dead once exponentiated
                    unnormalised = logits.sub_(top[:, None]).exp_()
                total = unnormalised.sum(dim=-1)
                block_lse = top + total.log()
                lse[start:stop] = block_lse
                logp[start:stop] = target_logits - block_lse
                if with_entropy:
                    mean_logit[start:stop] = torch.linalg.vecdot(unnormalised, logits) / total
        entropy = lse - mean_logit if with_entropy else logp.new_zeros(count)
        ctx.save_for_backward(low_hidden, low_weight, targets, lse, mean_logit)
        ctx.settings = (scale, chunk_size, hidden.dtype, weight.dtype)
        # oreal.models.direct_grads: the weight's gradient goes into weight.grad
        ctx.weight = weight if into_grad else None
        ctx.logits = chunk if keep else None
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
        count = low_hidden.shape[0]
        if grad_logp is None:
            grad_logp = lse.new_zeros(count)
        use_entropy = grad_entropy is not None and mean_logit.numel() > 0
        # A frozen head (LoRA) or frozen hidden states need no gradient: skip its matmul.
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # Straight into weight.grad, unless this backward builds a graph (autograd's way then).
        direct = need_weight and ctx.weight is not None and not torch.is_grad_enabled()
        grad_hidden = torch.empty_like(low_hidden) if need_hidden else None
        grad_weight: torch.Tensor | None = None
        weight_part: torch.Tensor | None = None
        kept, ctx.logits = ctx.logits, None  # the forward's logits, overwritten by gradients
        chunk = kept if kept is not None else _chunk_buffer(low_hidden, low_weight, chunk_size)
        scratch = _Scratch(low_weight)
        for lo in range(0, count, chunk_size):
            hi = min(lo + chunk_size, count)
            if kept is not None:  # the same bf16 logits a recompute would give
                low_grad = kept[lo:hi]
            else:
                low_grad = torch.mm(low_hidden[lo:hi], low_weight.t(), out=chunk[: hi - lo])
            for start in range(lo, hi, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, hi)
                block = low_grad[start - lo : stop - lo]
                logits = scratch.logits(block, scale)
                # d(loss)/d(raw logits) = scale * d(loss)/dz; the factor goes into the
                # coefficients.
                g = grad_logp[start:stop, None] * scale
                rows = torch.arange(stop - start, device=logits.device)
                picked = targets[start:stop]
                if use_entropy:
                    assert grad_entropy is not None
                    probs = scratch.second(torch.sub, logits, lse[start:stop, None]).exp_()
                    g_entropy = grad_entropy[start:stop, None] * scale
                    # p * (g_ent * (E[z] - z) - g), the coefficient formed in place of z
                    offset = g_entropy * mean_logit[start:stop, None] - g
                    coef = logits.mul_(-g_entropy).add_(offset)
                    target_probs, target_coef = probs[rows, picked], coef[rows, picked]
                    grad = probs.mul_(coef)
                else:
                    probs = logits.sub_(lse[start:stop, None]).exp_()
                    target_probs, target_coef = probs[rows, picked], -g[:, 0]
                    grad = probs.mul_(-g)
                # The one-hot term, added in fp32 before the single rounding to the compute
                # dtype, which overwrites the block's logits.
                grad[rows, picked] = target_probs * target_coef + g[:, 0]
                block.copy_(grad)
            if grad_hidden is not None:
                torch.mm(low_grad, low_weight, out=grad_hidden[lo:hi])
            if need_weight:
                # one output buffer for every chunk's weight gradient (54 MiB for SmolLM2)
                weight_part = torch.empty_like(low_weight) if weight_part is None else weight_part
                chunk_weight_grad = torch.mm(low_grad.t(), low_hidden[lo:hi], out=weight_part)
                if direct:
                    add_into_grad(ctx.weight, chunk_weight_grad)
                elif grad_weight is None:
                    grad_weight = chunk_weight_grad.to(torch.float32, copy=True)
                else:
                    add_widened(grad_weight, chunk_weight_grad)
        if need_weight and not direct and grad_weight is None:  # no rows
            grad_weight = low_weight.new_zeros(low_weight.shape, dtype=torch.float32)
        return (
            grad_hidden.to(hidden_dtype) if grad_hidden is not None else None,
            grad_weight.to(weight_dtype) if grad_weight is not None else None,
            *(None,) * 8,
        )


def _chunk_buffer(hidden: torch.Tensor, weight: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """One ``[rows, V]`` buffer in the compute dtype for every chunk's logits (and, in
    backward, their gradient), allocated once per call instead of once per chunk."""
    rows = max(1, min(chunk_size, hidden.shape[0]))
    return torch.empty(rows, weight.shape[0], dtype=weight.dtype, device=weight.device)


class _Scratch:
    """Two ``[_BLOCK_ROWS, V]`` fp32 buffers for a block of logits and a second quantity
    derived from them (exponentials, probabilities)."""

    def __init__(self, weight: torch.Tensor) -> None:
        shape = (_BLOCK_ROWS, weight.shape[0])
        self._first = torch.empty(shape, dtype=torch.float32, device=weight.device)
        self._second: torch.Tensor | None = None

    def logits(self, low_logits: torch.Tensor, scale: float) -> torch.Tensor:
        """fp32 logits of a block as the model's forward makes them: the matmul's output in
        the compute dtype, widened, then ``* scale`` in fp32."""
        logits = self._first[: low_logits.shape[0]].copy_(low_logits)
        return logits.mul_(scale) if scale != 1.0 else logits

    def second(self, op: Any, *args: torch.Tensor) -> torch.Tensor:
        """``op(*args)`` written into the second buffer."""
        if self._second is None:
            self._second = torch.empty_like(self._first)
        return op(*args, out=self._second[: args[0].shape[0]])
