"""A rollout engine that is dropped while the policy updates and rebuilt from it afterwards.

oreal's fast CPU engine holds nothing but data derived from the policy: a bf16 copy of its
weights (fp32 embedding), refreshed after every update, and a scratch KV cache. Neither is
read between the end of a step's rollouts and the weight refresh after its update, which is
when the update's gradients and activations are live: for SmolLM2-135M the engine holds
365 MiB of weights and a 312 MiB cache (64 rows x 111 positions), 677 MiB of the demo's
former peak (docs/performance.md, "Memory"). :class:`RebuildableEngine` lets the trainer
drop it for the update (:meth:`~RebuildableEngine.release`) and builds it again from the
updated policy in place of the weight refresh. A rebuilt engine samples exactly what a
refreshed one samples: its weights are the same cast of the same tensors, and its KV cache
carries nothing from one call to the next (a position that a call has not written gets
attention weight exactly 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from oreal.models.allocator import return_free_memory

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from oreal.rollout import Generator, RolloutBatch, SamplingParams

__all__ = ["RebuildableEngine"]


class RebuildableEngine:
    """A :class:`~oreal.rollout.Generator` built by ``build()`` (from the policy as it is when
    called) that may be released and is built again when next needed."""

    def __init__(self, build: Callable[[], Generator]) -> None:
        self._build = build
        self._engine: Generator | None = build()
        self.tokenizer: PreTrainedTokenizerBase = self._engine.tokenizer

    @property
    def engine(self) -> Generator:
        """The engine, built now if it was released."""
        if self._engine is None:
            self._engine = self._build()
        return self._engine

    @property
    def released(self) -> bool:
        return self._engine is None

    def release(self) -> None:
        """Drop the engine (its weights and KV cache) until it is needed again, and hand
        the freed memory back to the kernel: the update allocates in other sizes."""
        self._engine = None
        return_free_memory()

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        return self.engine.generate(prompts, params, num_return_sequences, keys=keys)

    def sync_weights(self, model: PreTrainedModel | Mapping[str, torch.Tensor]) -> None:
        """Refresh the engine's weights; a released engine is built from the policy instead
        (``build`` reads the policy module, which holds these weights)."""
        if self._engine is None:
            self._engine = self._build()
            return_free_memory()  # what the update freed: the rollouts allocate little of it
            return
        self._engine.sync_weights(model)
