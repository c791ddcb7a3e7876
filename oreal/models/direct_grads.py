"""Vocabulary-sized weight gradients added straight into ``weight.grad`` during an update.

The output head and the input embedding are the two ``V x H`` weights of a causal LM (one tensor
when tied: 49152 x 576 = 113 MB in fp32 for SmolLM2). Through autograd, every micro-batch's
backward makes a fresh fp32 gradient for each, the embedding's a zero-filled dense tensor for a
few hundred looked-up rows, and ``AccumulateGrad`` then adds it into ``.grad``: two 113 MB
allocations (page-faulted in anew, oreal.models.allocator maps large blocks on demand), a 113 MB
zero fill and two 113 MB additions per micro-batch: 0.4-1.2 s of a 7 s update of the embedded
model on 2 cores by torch.profiler, whose attribution can be far off on such a machine; the
update's measured gain with this module and the blocked head is in docs/performance.md.

Inside :func:`gradients_into_grad` (entered by :func:`oreal.train.update.policy_update` around
its backward passes), :class:`~oreal.models.fused_head.FusedHeadLogprobs` adds each chunk's head
gradient into ``weight.grad`` and :func:`embed` adds the looked-up rows' gradients with one
``index_add_``; neither returns a gradient to autograd for that weight. This is Megatron-LM's
gradient accumulation fusion (its ``gradient_accumulation_fusion`` option: the weight-gradient
GEMM accumulates into ``main_grad``), applied to the two largest weights only. It holds for a
weight that :func:`accumulates_into_grad` accepts: a plain leaf tensor that requires a gradient
and has no gradient hooks (so nothing, e.g. a data-parallel wrapper, expects the gradient to
pass through ``AccumulateGrad``), and only for backward passes that build no graph. Sharded
(FSDP2 ``DTensor``) weights take the autograd path.

A weight with a ``main_grad`` attribute (Megatron's name: None or an fp32 tensor) gets these
gradients summed there instead of in ``.grad``: :class:`oreal.models.precision.Bf16Parameters`
sets it, so that a bf16 weight's chunk and micro-batch gradients add up in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "accumulates_into_grad",
    "add_into_grad",
    "add_widened",
    "embed",
    "gradients_into_grad",
]

_enabled = False

#: Rows of a low-precision gradient widened at a time by :func:`add_widened`.
_WIDEN_ROWS = 4096


@contextlib.contextmanager
def gradients_into_grad() -> Iterator[None]:
    """Within this context, forwards set up the head's and the embedding's gradients to be
    added straight into ``weight.grad`` in backward (module docstring)."""
    global _enabled
    previous, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = previous


def accumulates_into_grad(weight: torch.Tensor) -> bool:
    """True when a forward run now may add ``weight``'s gradient into ``weight.grad`` itself:
    inside :func:`gradients_into_grad`, with autograd recording, for a plain (not sharded)
    leaf tensor that requires a gradient and has no hooks on it (tensor subclasses, FSDP2's
    ``DTensor`` among them, take autograd's path)."""
    return (
        _enabled
        and torch.is_grad_enabled()
        and weight.is_leaf
        and weight.requires_grad
        and type(weight) in (torch.Tensor, nn.Parameter)
        and not getattr(weight, "_backward_hooks", None)
        and not getattr(weight, "_post_accumulate_grad_hooks", None)
    )


def add_into_grad(weight: torch.Tensor, part: torch.Tensor) -> None:
    """``weight.grad += part`` in ``weight``'s dtype (:func:`add_widened`), or into its fp32
    ``main_grad`` where it has one (module docstring); without a sum yet, ``part`` widened
    becomes it."""
    if hasattr(weight, "main_grad"):
        if weight.main_grad is None:
            weight.main_grad = part.to(torch.float32, copy=True)
        else:
            add_widened(weight.main_grad, part)
    elif weight.grad is None:
        weight.grad = part.to(weight.dtype, copy=True)  # part may be a reused buffer
    else:
        add_widened(weight.grad, part)


def add_widened(total: torch.Tensor, part: torch.Tensor) -> None:
    """``total += part.to(total.dtype)`` without a widened copy of all of ``part``.

    A mixed-dtype ``add_`` takes a slow, unvectorised path, so ``part`` is widened first, but
    a whole fp32 copy of a head gradient is 113 MB for SmolLM2, live next to the sum at the
    moment the update's memory peaks: the same elementwise sum, in blocks of rows.
    """
    if part.dtype == total.dtype:
        total += part
        return
    for start in range(0, part.shape[0], _WIDEN_ROWS):
        total[start : start + _WIDEN_ROWS] += part[start : start + _WIDEN_ROWS].to(total.dtype)


class _EmbeddingIntoGrad(torch.autograd.Function):
    """``weight[ids]`` whose backward adds the rows' gradients into ``weight.grad``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, weight: torch.Tensor, ids: torch.Tensor, padding_idx: int | None
    ) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.weight, ctx.padding_idx = weight, padding_idx
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:  # type: ignore[override]
        (ids,) = ctx.saved_tensors
        weight, ids = ctx.weight, ids.flatten()
        main = hasattr(weight, "main_grad") and not torch.is_grad_enabled()
        dtype = torch.float32 if main else weight.dtype
        rows = grad.reshape(-1, grad.shape[-1]).to(dtype)
        if ctx.padding_idx is not None:  # nn.Embedding gives the padding row no gradient
            kept = ids != ctx.padding_idx
            ids, rows = ids[kept], rows[kept]
        if torch.is_grad_enabled():  # a backward that builds a graph: autograd's way
            return torch.zeros_like(weight).index_add(0, ids, rows), None, None
        if main:
            if weight.main_grad is None:
                weight.main_grad = torch.zeros_like(weight, dtype=torch.float32)
            weight.main_grad.index_add_(0, ids, rows)
            return None, None, None
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        weight.grad.index_add_(0, ids, rows)
        return None, None, None


def embed(module: nn.Module, ids: torch.Tensor) -> torch.Tensor | None:
    """``module(ids)`` with its gradient added straight into ``module.weight.grad``, or None
    where that does not apply (not a plain ``nn.Embedding``, one with max-norm, scaling or
    sparse gradients, or a weight :func:`accumulates_into_grad` refuses): then the caller
    runs the module as usual."""
    if type(module) is not nn.Embedding:
        return None
    if module.max_norm is not None or module.scale_grad_by_freq or module.sparse:
        return None
    if not accumulates_into_grad(module.weight):
        return None
    return _EmbeddingIntoGrad.apply(module.weight, ids, module.padding_idx)
