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
(RoPE's frequencies) stay fp32, as FSDP2 leaves them. The gradients are summed in each
trainable parameter's fp32 ``main_grad`` while the block runs (Megatron-LM's name and its
gradient-accumulation fusion): the head's chunks and the embedding's rows add into it directly
(:mod:`oreal.models.direct_grads`), autograd's bf16 gradients after each micro-batch. Trained
weights are cast at every entry (they change at every step); a frozen one keeps its bf16 copy.
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
    bf16 copy of itself; gradients are summed in fp32 (so a step's chunks and micro-batches
    add up in fp32, as autocast's do); on exit the fp32 values come back, with those sums as
    the trainable parameters' ``.grad``.

    The sums live in each trainable parameter's ``main_grad`` (Megatron-LM's name) while the
    block runs: :mod:`oreal.models.direct_grads` adds the head's and the embedding's
    gradients straight into it, and :meth:`widen_grads`, called after each backward, moves
    autograd's bf16 ``.grad`` into it. An fp32 ``.grad`` present on entry is where the sum
    starts (a copy of it). When the block raises, or entering it fails halfway, every
    parameter gets its fp32 values and its entry ``.grad`` back unchanged.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self.params = [p for p in model.parameters() if p.dtype == torch.float32]
        self._masters: list[torch.Tensor] = []
        self._entry_grads: list[torch.Tensor | None] = []

    def __enter__(self) -> Bf16Parameters:
        try:
            for param in self.params:
                self._masters.append(param.data)
                self._entry_grads.append(param.grad)
                param.grad = None
                if param.requires_grad:
                    entry = self._entry_grads[-1]
                    param.main_grad = None if entry is None else entry.clone()  # type: ignore[attr-defined]
                param.data = self._working_copy(param)
        except BaseException:
            self._restore(failed=True)
            raise
        return self

    def _working_copy(self, param: torch.Tensor) -> torch.Tensor:
        """``param`` in bf16: cast afresh if it trains; a frozen one's copy (LoRA's base) is
        kept on it and reused while its fp32 tensor and autograd version stay the same (in-place
        writes through ``.data`` are not seen), so a LoRA run casts its base once, not at every
        update and scoring call, for the copy's memory (270 MB for SmolLM2-135M)."""
        if param.requires_grad:
            param.__dict__.pop("_oreal_working_copy", None)  # a weight unfrozen since
            return param.data.to(self.dtype)
        key = (param.data_ptr(), param._version, self.dtype)
        cached = param.__dict__.get("_oreal_working_copy")
        if cached is None or cached[1] != key:
            # the entry holds the fp32 tensor it was cast from, so that no other tensor can
            # take its address and pass for it after a `param.data = ...` (which keeps _version)
            master = param.data
            cached = (master, key, master.to(self.dtype))
            param._oreal_working_copy = cached  # type: ignore[attr-defined]
        return cached[2]

    def widen_grads(self) -> None:
        """Add each parameter's bf16 ``.grad`` into its fp32 ``main_grad`` and clear it."""
        for param in self.params:
            grad = param.grad
            if grad is None:
                continue
            if param.main_grad is None:  # type: ignore[attr-defined]
                param.main_grad = grad.to(torch.float32)  # type: ignore[attr-defined]
            else:
                add_widened(param.main_grad, grad)  # type: ignore[attr-defined]
            param.grad = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self.widen_grads()
        except BaseException:  # out of memory while widening, say: still restore everything
            self._restore(failed=True)
            raise
        self._restore(failed=kind is not None)

    def _restore(self, *, failed: bool) -> None:
        """fp32 values back into the parameters entered so far; the fp32 sums as ``.grad``,
        or after a failure the entry ``.grad``."""
        # strict=False: after a failure halfway through __enter__, only the first ones
        entered = zip(self.params, self._masters, self._entry_grads, strict=False)
        for param, master, entry in entered:
            total = param.__dict__.pop("main_grad", None)
            param.grad = None
            param.data = master
            param.grad = entry if failed or not param.requires_grad else total
        self._masters, self._entry_grads = [], []


def working_weights(
    model: nn.Module, param_dtype: torch.dtype
) -> AbstractContextManager[Bf16Parameters | None]:
    """What ``model`` computes with for ``param_dtype``: its fp32 parameters as they are
    (yields None; bf16 compute then comes from autocast, if at all), or bf16 working copies
    (yields the :class:`Bf16Parameters`; autocast has nothing left to cast and is not used)."""
    if param_dtype == torch.float32:
        return contextlib.nullcontext()
    if param_dtype == torch.bfloat16:
        if any(type(p) not in (torch.Tensor, nn.Parameter) for p in model.parameters()):
            raise ValueError("bf16 working weights need plain parameters, not sharded ones")
        return Bf16Parameters(model, param_dtype)
    raise ValueError(f"param_dtype must be torch.float32 or torch.bfloat16, got {param_dtype}")
