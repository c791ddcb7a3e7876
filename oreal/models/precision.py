"""bf16 working copies of fp32 parameters: the mixed-precision recipe of FSDP2's
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` and Megatron-LM, in one process.

Mixed precision with fp32 master weights (Micikevicius et al., arXiv 1710.03740, §3.1): the
forward and backward run on bf16 copies of the weights, the gradients are accumulated in fp32,
and the optimizer steps the fp32 weights. Under bf16 autocast (``model.param_dtype=float32``)
every matmul casts its fp32 weight afresh (each micro-batch, forward and backward) and the
residual stream, norms and embeddings stay fp32; with bf16 parameters the weights are cast
once per optimizer step and everything between the matmuls runs in bf16 too (faster on CPUs
with bf16 matmuls, docs/performance.md; log-probs slightly less exact, same page).

:class:`Bf16Parameters` swaps each fp32 parameter's ``.data`` for a bf16 copy and back: the
``Parameter`` objects stay the same, so the optimizer, its state, checkpoints, resume and the
rollout engine's weight sync see fp32 parameters as before, outside the ``with`` block. Buffers
(RoPE's frequencies) stay fp32, as FSDP2 leaves them.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from types import TracebackType

import torch
from torch import nn

from oreal.models.direct_grads import add_widened

__all__ = ["Bf16Parameters", "working_weights"]


class Bf16Parameters:
    """``with Bf16Parameters(model) as weights:`` every fp32 parameter of ``model`` holds a
    bf16 copy of itself; :meth:`widen_grads` after each backward moves the bf16 gradients
    into fp32 sums (so a step's micro-batches add up in fp32, as autocast's do); on exit the
    fp32 values come back, with the fp32 sums as their ``.grad``.

    An fp32 ``.grad`` present on entry is where the sum starts. Nothing but ``.data`` and
    ``.grad`` changes, and both are restored on exit also when the block raises.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self.params = [p for p in model.parameters() if p.dtype == torch.float32]
        self._masters: list[torch.Tensor] = []
        self._sums: list[torch.Tensor | None] = []

    def __enter__(self) -> Bf16Parameters:
        self._masters = [p.data for p in self.params]
        self._sums = [p.grad for p in self.params]
        for param in self.params:
            param.grad = None
            param.data = param.data.to(self.dtype)
        return self

    def widen_grads(self) -> None:
        """Add each parameter's bf16 ``.grad`` into its fp32 sum and clear it."""
        for index, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            total = self._sums[index]
            if total is None:
                self._sums[index] = grad.to(torch.float32)
            else:
                add_widened(total, grad)
            param.grad = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.widen_grads()
        for param, master, total in zip(self.params, self._masters, self._sums, strict=True):
            param.data = master
            param.grad = total
        self._masters, self._sums = [], []


def working_weights(
    model: nn.Module, param_dtype: torch.dtype
) -> AbstractContextManager[Bf16Parameters | None]:
    """What ``model`` computes with for ``param_dtype``: its fp32 parameters as they are
    (yields None; bf16 compute then comes from autocast, if at all), or bf16 working copies
    (yields the :class:`Bf16Parameters`; autocast has nothing left to cast and is not used)."""
    if param_dtype == torch.float32:
        return contextlib.nullcontext()
    if param_dtype == torch.bfloat16:
        return Bf16Parameters(model, param_dtype)
    raise ValueError(f"param_dtype must be torch.float32 or torch.bfloat16, got {param_dtype}")
