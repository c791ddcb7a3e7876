"""Generation backend interface and the rollout data that flows from it to the trainer.

A :class:`Generator` turns already-templated prompt strings into K sampled responses each.
Backends: :class:`~oreal.rollout.hf.HFGenerator` (transformers ``generate``, shares the trainer's
module), :class:`~oreal.rollout.fast.FastGenerator` (the CPU default: own bf16 weights, static KV
cache, keyed sampling) and :class:`~oreal.rollout.vllm.VLLMGenerator`.
:meth:`Generator.sync_weights` pushes the trainer's weights into a backend that keeps its own
copy (see docs/rollout.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "FinishReason",
    "GenerationOutput",
    "Generator",
    "RolloutBatch",
    "SamplingParams",
    "encode_request",
    "generation_stats",
    "resolve_seed",
]

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding (top_p / top_k ignored).

    ``top_k = 0`` and ``top_p = 1.0`` disable those filters. ``stop`` strings end a response
    like eos does; the text is cut before the stop string unless ``include_stop_str``. With a
    ``seed`` sampling is reproducible for the same prompts, K and generator settings; on the
    keyed backends (fast CPU path) token ``t`` of sample ``i`` of the prompt with key ``p``
    depends only on ``(seed, p, i, t)`` and the weights, whatever the batch layout.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    include_stop_str: bool = False

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise ValueError("seed must be >= 0")
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
    iff generation hit ``max_new_tokens`` with neither eos nor a stop string. ``logprobs``, when
    the backend provides them, are the log-probabilities of ``response_ids`` under the
    distribution the engine sampled from (after temperature / top-k / top-p), one per token.
    """

    group: int
    sample: int
    prompt: str
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: list[float] | None = None

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
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """Sample ``num_return_sequences`` responses per prompt, a prompt's samples contiguous.

        ``keys`` (default ``0..n-1``) name each prompt for keyed randomness: one stable
        non-negative integer per prompt, e.g. its index in the step's global prompt list.
        """
        ...

    def sync_weights(self, model: PreTrainedModel | Mapping[str, torch.Tensor]) -> None:
        """Make the backend sample from these weights: a module or a full (unsharded) state
        dict (no-op when the backend shares the trainer's module)."""
        ...


def encode_request(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    num_return_sequences: int,
    keys: Sequence[int] | None,
) -> tuple[list[list[int]], list[int]]:
    """Validate a :meth:`Generator.generate` call and tokenize its prompts: the prompts' ids
    (no special tokens: the template already holds them) and one key per prompt (default
    ``0..n-1``). Every backend checks its inputs the same way through this."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not a single string")
    if num_return_sequences < 1:
        raise ValueError("num_return_sequences must be >= 1")
    keys = list(range(len(prompts))) if keys is None else [int(k) for k in keys]
    if len(keys) != len(prompts) or min(keys, default=0) < 0:
        raise ValueError("keys must be one non-negative integer per prompt")
    encoded = [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i} tokenizes to nothing")
    return encoded, keys


def resolve_seed(params: SamplingParams) -> int:
    """``params.seed``, or a seed drawn from torch's global RNG when it is ``None`` (so that
    ``torch.manual_seed`` still makes an unseeded call reproducible)."""
    if params.seed is not None:
        return params.seed
    return int(torch.randint(0, 2**62, (1,)).item())


def generation_stats(
    outputs: Sequence[GenerationOutput], elapsed: float, generated_tokens: int | None = None
) -> dict[str, float]:
    """The stats every backend reports with a :class:`RolloutBatch`. ``generated_tokens``
    defaults to the returned responses' tokens (a search generates more than it returns)."""
    returned = sum(len(o.response_ids) for o in outputs)
    generated = returned if generated_tokens is None else generated_tokens
    return {
        "generate_s": elapsed,
        "generated_tokens": float(generated),
        "tokens_per_s": generated / elapsed if elapsed > 0 else 0.0,
        "mean_response_tokens": returned / len(outputs),
        "truncated_frac": sum(o.truncated for o in outputs) / len(outputs),
    }
