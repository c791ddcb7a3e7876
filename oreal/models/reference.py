"""The frozen reference policy π_ref of the KL term, with one owner.

π_ref is the *initial* policy (OREAL release, GRPO), frozen for the whole run. It is either a
frozen copy of the policy, or, when the policy trains LoRA adapters, the policy itself with its
adapters disabled (no second copy). OREAL's token RM may borrow the reference's frozen weights
as its LoRA backbone; it then registers the context that switches its own adapters off
(:meth:`FrozenReference.add_scope`), so that scoring π_ref never sees them.

A copy that is only ever scored under bf16 autocast stores its linear layers' weights in bf16
(``matmul_dtype``): autocast casts them to bf16 before every matmul anyway, so the log-probs
are bit-identical while the copy takes 0.61x the memory for SmolLM2-135M (311 MiB instead of
513: its layers' linear weights are 106M of its 135M parameters; the embedding, also its tied
head, and the norms stay fp32, since they enter fp32 arithmetic).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch
from torch import nn

from oreal.models.fused_head import release_low_precision_copies
from oreal.models.logprobs import batch_logprobs

if TYPE_CHECKING:
    from oreal.batch import TrainBatch
    from oreal.runtime import Runtime

__all__ = ["FrozenReference", "low_precision_reference_supported"]


class FrozenReference:
    """π_ref: frozen weights and the way to score them."""

    def __init__(
        self,
        module: nn.Module,
        *,
        shared_with_policy: bool = False,
        matmul_dtype: torch.dtype | None = None,
    ) -> None:
        self.module = module
        self.shared_with_policy = shared_with_policy
        #: the dtype its linear weights are stored in when not fp32: it is scored under
        #: autocast to this dtype only (an fp32 matmul would need the fp32 weights)
        self.matmul_dtype = matmul_dtype
        self._scopes: list[Callable[[], AbstractContextManager[None]]] = []
        if shared_with_policy:  # a LoRA policy: its base, with the adapters off
            self._scopes.append(module.disable_adapter)  # type: ignore[attr-defined]

    @classmethod
    def copy_of(
        cls,
        policy: nn.Module,
        *,
        matmul_dtype: torch.dtype | None = None,
        param_dtype: torch.dtype | None = None,
    ) -> FrozenReference:
        """A frozen deep copy of the (initial) policy.

        ``matmul_dtype`` (the autocast dtype the run scores π_ref under) stores the weights of
        the linear layers in that dtype (module docstring); the output head stays as it is
        when its weight is the input embedding's. Pass it only for models whose linear
        weights enter the forward through ``F.linear`` alone (Llama and Qwen2 do; see
        :func:`low_precision_reference_supported`). ``param_dtype=torch.bfloat16`` stores
        every parameter in bf16 instead (buffers stay fp32), for a run whose policy computes
        with bf16 copies of its weights (:mod:`oreal.models.precision`): π_ref then scores
        exactly as the initial policy does, at a quarter of the fp32 copy's memory.
        """
        module = copy.deepcopy(policy)
        module.eval()
        for param in module.parameters():
            param.requires_grad_(False)
            if param_dtype is not None and param.is_floating_point():
                param.data = param.data.to(param_dtype)
        if matmul_dtype is not None:
            _store_linear_weights(module, matmul_dtype)
        return cls(module, matmul_dtype=matmul_dtype)

    @classmethod
    def lora_base_of(cls, policy: nn.Module) -> FrozenReference:
        """The frozen base of a peft LoRA policy (scored with its adapters disabled)."""
        return cls(policy, shared_with_policy=True)

    def add_scope(self, scope: Callable[[], AbstractContextManager[None]]) -> None:
        """Enter ``scope()`` whenever π_ref is scored (a borrower's adapters switched off)."""
        self._scopes.append(scope)

    @contextlib.contextmanager
    def active(self) -> Iterator[nn.Module]:
        """The module as π_ref: borrowers' and the policy's adapters off, eval mode."""
        was_training = self.module.training
        self.module.eval()
        try:
            with contextlib.ExitStack() as stack:
                for scope in self._scopes:
                    stack.enter_context(scope())
                yield self.module
        finally:
            self.module.train(was_training)

    @torch.no_grad()
    def logprobs(
        self,
        batch: TrainBatch,
        *,
        micro_batch_size: int,
        autocast: bool,
        param_dtype: torch.dtype = torch.float32,
        temperature: float = 1.0,
        runtime: Runtime | None = None,
    ) -> torch.Tensor:
        """log π_ref of the response tokens, ``[B, R]`` (``param_dtype``: as
        :func:`~oreal.models.logprobs.batch_logprobs`)."""
        if self.matmul_dtype is not None and not autocast:
            raise ValueError(
                f"this reference stores its linear weights in {self.matmul_dtype} and is scored "
                "under autocast only (build it without matmul_dtype for fp32 scoring)"
            )
        with self.active() as module:
            logprobs = batch_logprobs(
                module,
                batch,
                micro_batch_size=micro_batch_size,
                autocast=autocast,
                param_dtype=param_dtype,
                temperature=temperature,
                runtime=runtime,
            )
        # Its head's bf16 cast is stale after the coming update: not kept through it.
        release_low_precision_copies()
        return logprobs


def low_precision_reference_supported(model: nn.Module) -> bool:
    """Whether a bf16-stored reference scores exactly as an fp32 one under autocast: the
    Llama/Qwen2 family that oreal's fast paths support, whose linear weights enter the forward
    only through ``F.linear`` (no code reads their dtype)."""
    from oreal.rollout.llama_decoder import unsupported_reason

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return unsupported_reason(base) is None


def _store_linear_weights(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast the weight (and bias) of every ``nn.Linear`` in ``module`` to ``dtype``, except a
    head that shares its weight with the input embedding (the lookup reads it in fp32)."""
    embeddings = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    shared = {id(embeddings.weight)} if embeddings is not None else set()
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and id(layer.weight) not in shared:
            layer.to(dtype)
