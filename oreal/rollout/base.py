"""Generation backend interface and the rollout data that flows from it to the trainer.

A :class:`Generator` turns already-templated prompt strings into K sampled responses each.
:class:`HFGenerator` (transformers ``generate``) is the only backend today; a vLLM backend will
implement the same protocol later (with :meth:`Generator.sync_weights` pushing the trainer's
weights into the inference engine, a no-op for the HF backend, which shares the module).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "FinishReason",
    "GenerationOutput",
    "Generator",
    "RolloutBatch",
    "SamplingParams",
]

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding (top_p / top_k ignored).

    ``top_k = 0`` and ``top_p = 1.0`` disable those filters. ``stop`` strings end a response
    like eos does; the text is cut before the stop string unless ``include_stop_str``. With a
    ``seed`` sampling is reproducible for the same prompts, K and generator settings.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    include_stop_str: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if isinstance(self.stop, str):  # a lone string would otherwise become characters
            object.__setattr__(self, "stop", (self.stop,))
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class GenerationOutput:
    """One sampled response.

    ``response_ids`` are the sampled tokens, without padding, including the final eos token (the
    policy must learn to emit it) or the token that completed a stop string. ``text`` is the
    decoded response without eos and (by default) without the stop string. ``truncated`` is true
    iff generation hit ``max_new_tokens`` with neither eos nor a stop string.
    """

    group: int
    sample: int
    prompt: str
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    finish_reason: FinishReason

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class RolloutBatch:
    """Outputs for ``num_prompts`` prompts x ``k`` samples, in prompt-major order.

    ``outputs[g * k + i]`` is sample ``i`` of prompt ``g``; its ``group`` field is ``g``.
    """

    outputs: list[GenerationOutput]
    num_prompts: int
    k: int
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.outputs)

    def __iter__(self) -> Iterator[GenerationOutput]:
        return iter(self.outputs)

    @property
    def group_index(self) -> list[int]:
        return [o.group for o in self.outputs]


@runtime_checkable
class Generator(Protocol):
    """A rollout backend: batched sampling of K responses for each templated prompt."""

    tokenizer: PreTrainedTokenizerBase

    def generate(
        self, prompts: Sequence[str], params: SamplingParams, num_return_sequences: int = 1
    ) -> RolloutBatch:
        """Sample ``num_return_sequences`` responses per prompt, a prompt's samples contiguous."""
        ...

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Make the backend sample from ``model``'s current weights (no-op when shared)."""
        ...
