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

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "FinishReason",
    "GenerationOutput",
    "Generator",
    "RolloutBatch",
    "SamplingParams",
    "TrainTensors",
    "pad_rollouts",
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

    def groups(self) -> list[list[GenerationOutput]]:
        return [self.outputs[g * self.k : (g + 1) * self.k] for g in range(self.num_prompts)]

    def to_tensors(
        self, pad_token_id: int, device: str | torch.device | None = None
    ) -> TrainTensors:
        return pad_rollouts(
            [(o.prompt_ids, o.response_ids) for o in self.outputs], pad_token_id, device=device
        )


@dataclass
class TrainTensors:
    """Right-padded training inputs for ``token_logprobs`` / loss computation.

    ``response_mask [B, T]`` marks response tokens inside ``input_ids``; ``loss_mask [B, R]`` is
    the same information in the compact layout of ``token_logprobs`` outputs (R = longest
    response); ``response_lengths [B]`` counts response tokens per row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    loss_mask: torch.Tensor
    response_lengths: torch.Tensor

    def to(self, device: str | torch.device) -> TrainTensors:
        return TrainTensors(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.response_mask.to(device),
            self.loss_mask.to(device),
            self.response_lengths.to(device),
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, rows: slice | torch.Tensor | list[int]) -> TrainTensors:
        """Select rows (micro-batching); columns that are padding in every picked row are cut."""
        attention = self.attention_mask[rows]
        lengths = self.response_lengths[rows]
        used = int(attention.sum(dim=1).max().item()) if attention.numel() else 0
        width = int(lengths.max().item()) if lengths.numel() else 0
        return TrainTensors(
            self.input_ids[rows][:, :used],
            attention[:, :used],
            self.response_mask[rows][:, :used],
            self.loss_mask[rows][:, :width],
            lengths,
        )


def pad_rollouts(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    *,
    device: str | torch.device | None = None,
) -> TrainTensors:
    """Turn ``(prompt_ids, response_ids)`` pairs into right-padded training tensors.

    Right padding keeps position ids equal to ``arange`` for every row, so a plain forward pass
    (no ``position_ids``) scores the tokens exactly as they were generated.
    """
    if not pairs:
        raise ValueError("no rollouts to pad")
    lengths = [len(p) + len(r) for p, r in pairs]
    batch, width = len(pairs), max(lengths)
    resp_width = max(len(r) for _, r in pairs)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    response_mask = torch.zeros((batch, width), dtype=torch.bool)
    loss_mask = torch.zeros((batch, resp_width), dtype=torch.bool)
    for row, (prompt, response) in enumerate(pairs):
        if not prompt:
            raise ValueError(f"rollout {row} has an empty prompt; nothing predicts its first token")
        n_p, n_r = len(prompt), len(response)
        input_ids[row, : n_p + n_r] = torch.tensor([*prompt, *response], dtype=torch.long)
        attention_mask[row, : n_p + n_r] = 1
        response_mask[row, n_p : n_p + n_r] = True
        loss_mask[row, :n_r] = True
    response_lengths = torch.tensor([len(r) for _, r in pairs], dtype=torch.long)
    out = TrainTensors(input_ids, attention_mask, response_mask, loss_mask, response_lengths)
    return out.to(device) if device is not None else out


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
