"""The frozen reference policy π_ref of the KL term, with one owner.

π_ref is the *initial* policy (OREAL release, GRPO), frozen for the whole run. It is either a
frozen copy of the policy, or, when the policy trains LoRA adapters, the policy itself with its
adapters disabled (no second copy). OREAL's token RM may borrow the reference's frozen weights
as its LoRA backbone; it then registers the context that switches its own adapters off
(:meth:`FrozenReference.add_scope`), so that scoring π_ref never sees them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch
from torch import nn

from oreal.models.logprobs import batch_logprobs

if TYPE_CHECKING:
    from oreal.batch import TrainBatch
    from oreal.runtime import Runtime

__all__ = ["FrozenReference"]


class FrozenReference:
    """π_ref: frozen weights and the way to score them."""

    def __init__(self, module: nn.Module, *, shared_with_policy: bool = False) -> None:
        self.module = module
        self.shared_with_policy = shared_with_policy
        self._scopes: list[Callable[[], AbstractContextManager[None]]] = []
        if shared_with_policy:  # a LoRA policy: its base, with the adapters off
            self._scopes.append(module.disable_adapter)  # type: ignore[attr-defined]

    @classmethod
    def copy_of(cls, policy: nn.Module) -> FrozenReference:
        """A frozen deep copy of the (initial) policy."""
        module = copy.deepcopy(policy)
        module.eval()
        for param in module.parameters():
            param.requires_grad_(False)
        return cls(module)

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
        temperature: float = 1.0,
        runtime: Runtime | None = None,
    ) -> torch.Tensor:
        """log π_ref of the response tokens, ``[B, R]``."""
        with self.active() as module:
            return batch_logprobs(
                module,
                batch,
                micro_batch_size=micro_batch_size,
                autocast=autocast,
                temperature=temperature,
                runtime=runtime,
            )
