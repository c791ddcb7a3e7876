"""The step record: one row per rollout, filled stage by stage, and its padded tensor view.

    problems -> rollouts -> verdicts/rewards -> advantages -> (token RM) -> loss -> update

A :class:`StepBatch` holds one :class:`Rollout` per sampled response of one training step (on
this rank). The generator fills the problem, prompt, ids, text and finish reason; the reward
stage the verdict, ``correct``, ``reward`` and the per-term values; the advantage stage
``advantage``, ``keep`` and ``pass_rate``; the scoring stages the per-token ``old_logprobs``,
``ref_logprobs`` and ``token_weights``. Nothing about a step travels beside it.

``batch.kept()`` is the rows that enter the loss (the same row objects, so whatever a stage
writes on the kept view is on the step's record); ``batch.tensors(pad_id)`` is the
right-padded :class:`TrainBatch` the model and the loss read, with a row's token fields in the
compact ``[B, R]`` layout of :func:`oreal.models.token_logprobs` (column j = the j-th response
token). :meth:`StepBatch.set_tokens` writes such a ``[B, R]`` result back onto the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from oreal.data import Problem
    from oreal.verify import Verdict

__all__ = ["Rollout", "StepBatch", "TrainBatch", "pad_rollouts"]

FinishReason = Literal["eos", "stop", "length"]
TOKEN_FIELDS = ("old_logprobs", "ref_logprobs", "token_weights", "sampled_logprobs")


@dataclass(eq=False)
class Rollout:
    """One sampled response and everything the step learns about it.

    ``group`` is the index of its prompt among the step's prompts (over all ranks), ``sample``
    its index among the K samples of that prompt: together they key every random draw made for
    it. Token-level fields are 1-D float tensors with one value per response token.
    """

    problem: Problem
    group: int
    sample: int
    prompt: str
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    finish_reason: FinishReason
    sampled_logprobs: Tensor | None = None
    # the reward stage
    verdict: Verdict | None = None
    correct: bool | None = None
    reward: float | None = None
    reward_terms: dict[str, float | None] = field(default_factory=dict)
    token_rewards: Tensor | None = None
    # the advantage stage
    advantage: float = 0.0
    keep: bool = False
    pass_rate: float = 0.0
    # the scoring stages
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None
    token_weights: Tensor | None = None
    token_q: Tensor | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def num_tokens(self) -> int:
        return len(self.response_ids)


@dataclass
class StepBatch:
    """The rollouts of one step on this rank, grouped by prompt (a group never spans ranks)."""

    step: int
    rows: list[Rollout]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Rollout]:
        return iter(self.rows)

    def kept(self) -> StepBatch:
        """The rows that enter the loss (the same objects: writes land on the step's record)."""
        return StepBatch(self.step, [row for row in self.rows if row.keep])

    def group_ids(self) -> Tensor:
        return torch.tensor([row.group for row in self.rows], dtype=torch.long)

    def values(self, name: str, dtype: torch.dtype = torch.float32) -> Tensor:
        """A scalar field of every row as a ``[B]`` tensor (e.g. ``"reward"``, ``"correct"``)."""
        items = [getattr(row, name) for row in self.rows]
        if any(item is None for item in items):
            raise ValueError(f"field {name!r} is not filled on every row")
        return torch.tensor(items, dtype=dtype)

    def set(self, name: str, values: Tensor | Sequence[Any]) -> None:
        """Write one scalar per row into field ``name``."""
        items = values.tolist() if isinstance(values, Tensor) else list(values)
        if len(items) != len(self.rows):
            raise ValueError(f"{len(items)} values for {len(self.rows)} rows")
        for row, item in zip(self.rows, items, strict=True):
            setattr(row, name, item)

    def set_tokens(self, name: str, padded: Tensor) -> None:
        """Write a ``[B, R]`` compact-layout tensor onto the rows, one 1-D slice per row."""
        if padded.shape[0] != len(self.rows):
            raise ValueError(f"{padded.shape[0]} rows of {name!r} for {len(self.rows)} rows")
        values = padded.detach().float().cpu()
        for row, line in zip(self.rows, values, strict=True):
            setattr(row, name, line[: row.num_tokens].clone())

    def tensors(self, pad_token_id: int, device: str | torch.device | None = None) -> TrainBatch:
        """The right-padded tensors of these rows (advantage, kind and token fields included).

        No rows give a zero-row batch (a data-parallel rank whose groups were all filtered out).
        """
        if not self.rows:
            empty = pad_rollouts([([pad_token_id], [pad_token_id])], pad_token_id)[0:0]
            return empty.to(device) if device is not None else empty
        batch = pad_rollouts([(r.prompt_ids, r.response_ids) for r in self.rows], pad_token_id)
        width = batch.loss_mask.shape[1]

        def tokens(name: str) -> Tensor | None:
            lines = [getattr(row, name) for row in self.rows]
            if all(line is None for line in lines):
                return None
            if any(line is None for line in lines):
                raise ValueError(f"token field {name!r} is set on some rows only")
            out = torch.zeros(len(lines), width, dtype=torch.float32)
            for index, line in enumerate(lines):
                out[index, : line.numel()] = line
            return out

        batch = replace(
            batch,
            advantages=torch.tensor([r.advantage for r in self.rows], dtype=torch.float32),
            positive=torch.tensor([bool(r.correct) for r in self.rows], dtype=torch.bool),
            pass_rate=torch.tensor([r.pass_rate for r in self.rows], dtype=torch.float32),
            **{name: tokens(name) for name in TOKEN_FIELDS},
        )
        return batch.to(device) if device is not None else batch


@dataclass
class TrainBatch:
    """Right-padded rows for the model and the loss.

    ``response_mask [B, T]`` marks the response tokens inside ``input_ids``; ``loss_mask
    [B, R]`` is the same in the compact layout of ``token_logprobs`` outputs (R = longest
    response), the layout of every per-token field; ``response_lengths [B]``. Right padding
    keeps position ids equal to ``arange``, so a plain forward scores tokens as generated.
    """

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    loss_mask: Tensor
    response_lengths: Tensor
    advantages: Tensor
    positive: Tensor
    pass_rate: Tensor
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None
    token_weights: Tensor | None = None
    sampled_logprobs: Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: str | torch.device) -> TrainBatch:
        def move(value: Tensor | None) -> Tensor | None:
            return None if value is None else value.to(device)

        return TrainBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def __getitem__(self, rows: slice | Tensor | list[int]) -> TrainBatch:
        """Select rows (micro-batching); columns that are padding in every picked row are cut."""
        attention = self.attention_mask[rows]
        lengths = self.response_lengths[rows]
        used = int(attention.sum(dim=1).max().item()) if attention.numel() else 0
        width = int(lengths.max().item()) if lengths.numel() else 0

        def tokens(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[rows][:, :width]

        return TrainBatch(
            input_ids=self.input_ids[rows][:, :used],
            attention_mask=attention[:, :used],
            response_mask=self.response_mask[rows][:, :used],
            loss_mask=self.loss_mask[rows][:, :width],
            response_lengths=lengths,
            advantages=self.advantages[rows],
            positive=self.positive[rows],
            pass_rate=self.pass_rate[rows],
            **{name: tokens(getattr(self, name)) for name in TOKEN_FIELDS},
        )

    def placeholder(self) -> TrainBatch:
        """A one-row batch with no response token to score: what a rank runs when it has no
        rows left but sharded data-parallel forwards must stay in lockstep (its loss is 0)."""
        batch = pad_rollouts([([0], [0])], 0)  # token 0 exists in every vocabulary
        zeros = {
            name: torch.zeros(1, 1) for name in TOKEN_FIELDS if getattr(self, name) is not None
        }
        batch = replace(batch, loss_mask=torch.zeros_like(batch.loss_mask), **zeros)
        return batch.to(self.input_ids.device)


def pad_rollouts(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    *,
    device: str | torch.device | None = None,
) -> TrainBatch:
    """Turn ``(prompt_ids, response_ids)`` pairs into right-padded tensors (advantages 0)."""
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
    out = TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        loss_mask=loss_mask,
        response_lengths=torch.tensor([len(r) for _, r in pairs], dtype=torch.long),
        advantages=torch.zeros(batch),
        positive=torch.zeros(batch, dtype=torch.bool),
        pass_rate=torch.zeros(batch),
    )
    return out.to(device) if device is not None else out
