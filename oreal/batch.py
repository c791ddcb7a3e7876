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

__all__ = [
    "AttentionBlock",
    "Rollout",
    "SharedPrefixLayout",
    "StepBatch",
    "TrainBatch",
    "pad_rollouts",
    "shared_prefix_layout",
]

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


@dataclass(frozen=True)
class AttentionBlock:
    """Segments of a :class:`SharedPrefixLayout` stream that attend as one padded batch.

    ``index [n, L]``: the stream positions of each segment (0 where ``valid`` is False);
    ``slots``: where the valid entries sit in the flattened ``[n * L]`` grid, in stream order
    (to read results back). Suffix blocks also carry ``row_prefix [n]`` (which prefix each
    segment continues) and ``mask [n, 1, L, P + L]`` (which keys, its prefix's P columns then its
    own L, each of its tokens may attend to).
    """

    index: Tensor
    valid: Tensor
    slots: Tensor
    row_prefix: Tensor | None = None
    mask: Tensor | None = None


@dataclass(frozen=True)
class SharedPrefixLayout:
    """Right-padded rows re-laid as one unpadded token stream in which rows that start with
    the same prefix (the K rollouts of one prompt) hold that prefix only once.

    Each row is split at its first response token into a *prefix* (the prompt) and a *suffix*
    (the rest, up to its last real token). The stream ``input_ids [1, N]`` is every distinct
    prefix, then every row's suffix (rows in order of suffix length), with no padding;
    ``position_ids`` restart at 0 for each prefix and continue the row's prefix in its suffix,
    so each token sits at the position it had in its row. Attention
    (:func:`oreal.models.logprobs.shared_prefix_attention`) lets a prefix token see the earlier
    tokens of its prefix, and a suffix token its row's prefix and the earlier tokens of its own
    suffix: every token sees exactly what it saw in its row.

    For G distinct prefixes of lengths P_g and rows with suffixes S_b the stream has
    ``sum P_g + sum S_b`` tokens instead of ``B x max(P_b + S_b)``: with K rollouts per prompt
    the prompt is computed once instead of K times, and no padding enters a matmul. Attention
    still runs on padded blocks: ``prefixes`` (one causal block) and ``suffixes`` (rows
    bucketed by suffix length, so that short rows are not padded to the longest).

    ``score_positions [M]`` / ``score_targets [M]``: for each response token, in the compact
    row-major order of :func:`oreal.models.token_logprobs`, the stream position whose hidden
    state predicts it and its token id; ``compact_valid [B, R]`` places them in the rows.
    """

    input_ids: Tensor
    position_ids: Tensor
    prefixes: AttentionBlock
    suffixes: tuple[AttentionBlock, ...]
    score_positions: Tensor
    score_targets: Tensor
    compact_valid: Tensor

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]


#: Most suffix buckets per layout (each is one attention call per layer).
MAX_SUFFIX_BUCKETS = 4


def shared_prefix_layout(
    input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor
) -> SharedPrefixLayout | None:
    """The :class:`SharedPrefixLayout` of right-padded rows, or None when a row is not
    right-padded (its real tokens are not a contiguous run from column 0)."""
    device = input_ids.device
    rows, width = input_ids.shape
    attention = attention_mask.bool()
    lengths = attention.sum(dim=1)
    columns = torch.arange(width, device=device)
    if not torch.equal(attention, columns[None, :] < lengths[:, None]):
        return None
    response = response_mask.bool() & attention
    has_response = response.any(dim=1)
    # A row without response tokens is all prefix; otherwise the prefix ends before the first.
    firsts = torch.where(has_response, response.int().argmax(dim=1), lengths).tolist()
    ids, ends = input_ids.tolist(), lengths.tolist()

    group_of: dict[tuple[int, ...], int] = {}
    prefixes: list[list[int]] = []
    row_prefix: list[int] = []
    for row in range(rows):
        prefix = tuple(ids[row][: firsts[row]])
        if prefix not in group_of:
            group_of[prefix] = len(prefixes)
            prefixes.append(list(prefix))
        row_prefix.append(group_of[prefix])
    prefix_lengths = [len(p) for p in prefixes]
    suffix_lengths = [end - first for end, first in zip(ends, firsts, strict=True)]
    order = sorted(range(rows), key=lambda row: suffix_lengths[row])  # stable: ties in order

    stream = [t for p in prefixes for t in p]
    positions = [i for n in prefix_lengths for i in range(n)]
    prefix_starts = _starts(prefix_lengths, 0)
    suffix_starts = [0] * rows
    for row in order:
        suffix_starts[row] = len(stream)
        stream.extend(ids[row][firsts[row] : ends[row]])
        positions.extend(range(firsts[row], ends[row]))

    prefix_block = _block(prefix_starts, prefix_lengths, device)
    prefix_width = prefix_block.index.shape[1]
    suffixes = []
    with_suffix = [row for row in order if suffix_lengths[row] > 0]
    for bucket in _length_buckets([suffix_lengths[r] for r in with_suffix], prefix_width):
        members = [with_suffix[i] for i in bucket]
        starts = [suffix_starts[r] for r in members]
        block = _block(starts, [suffix_lengths[r] for r in members], device)
        owners = torch.tensor([row_prefix[r] for r in members], dtype=torch.long, device=device)
        mask = _suffix_mask(prefix_block.valid[owners], block.index.shape[1])
        suffixes.append(replace(block, row_prefix=owners, mask=mask))

    # Response token at column t is predicted by column t - 1: the prefix's last token when
    # t is the first response column, else suffix column t - 1 - first. Vectorised: this runs
    # once per micro-batch over every response token.
    def longs(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    score_rows, score_columns = response.nonzero(as_tuple=True)  # row-major, as compacted
    row_first = longs(firsts)[score_rows]
    from_prefix = longs(prefix_starts)[longs(row_prefix)[score_rows]] + row_first - 1
    from_suffix = longs(suffix_starts)[score_rows] + score_columns - 1 - row_first
    score_positions = torch.where(score_columns == row_first, from_prefix, from_suffix)
    score_targets = input_ids[score_rows, score_columns]
    counts = response.sum(dim=1)
    compact_width = int(counts.max()) if rows else 0

    return SharedPrefixLayout(
        input_ids=longs(stream)[None],
        position_ids=longs(positions)[None],
        prefixes=prefix_block,
        suffixes=tuple(suffixes),
        score_positions=score_positions,
        score_targets=score_targets,
        compact_valid=torch.arange(compact_width, device=device)[None, :] < counts[:, None],
    )


def _starts(lengths: list[int], offset: int) -> list[int]:
    starts, position = [], offset
    for length in lengths:
        starts.append(position)
        position += length
    return starts


def _block(starts: list[int], lengths: list[int], device: torch.device) -> AttentionBlock:
    """The padded ``[n, max length]`` block of contiguous stream segments."""
    width = max(lengths, default=0)
    offsets = torch.arange(width, device=device)[None, :]
    valid = offsets < torch.tensor(lengths, device=device, dtype=torch.long)[:, None]
    index = torch.tensor(starts, dtype=torch.long, device=device)[:, None] + offsets
    slots = valid.flatten().nonzero().squeeze(1)
    return AttentionBlock(index=index.masked_fill(~valid, 0), valid=valid, slots=slots)


def _suffix_mask(sees_prefix: Tensor, width: int) -> Tensor:
    """``[n, 1, L, P + L]``: query s sees its prefix's valid columns and its own columns <= s."""
    count, prefix_width = sees_prefix.shape
    causal = torch.ones(width, width, dtype=torch.bool, device=sees_prefix.device).tril()
    return torch.cat(
        [
            sees_prefix[:, None, :].expand(count, width, prefix_width),
            causal[None].expand(count, -1, -1),
        ],
        dim=2,
    )[:, None]


def _length_buckets(sorted_lengths: list[int], prefix_width: int) -> list[list[int]]:
    """Split ascending suffix lengths into at most :data:`MAX_SUFFIX_BUCKETS` runs that
    minimise the padded attention area, sum of n * L * (P + L) per run, plus one row's worth of
    area per extra run (an attention call has a fixed cost too). Dynamic programming over the
    O(n^2) cut points; n is a micro-batch's rows."""
    count = len(sorted_lengths)
    if count == 0:
        return []

    def area(lo: int, hi: int) -> int:  # rows lo..hi-1 padded to the longest, sorted_lengths[hi-1]
        longest = sorted_lengths[hi - 1]
        return (hi - lo) * longest * (prefix_width + longest) + longest * (prefix_width + longest)

    inf = float("inf")
    best = [[inf] * (count + 1) for _ in range(MAX_SUFFIX_BUCKETS + 1)]
    cut = [[0] * (count + 1) for _ in range(MAX_SUFFIX_BUCKETS + 1)]
    best[0][0] = 0
    for runs in range(1, MAX_SUFFIX_BUCKETS + 1):
        for hi in range(1, count + 1):
            for lo in range(runs - 1, hi):
                cost = best[runs - 1][lo] + area(lo, hi)
                if cost < best[runs][hi]:
                    best[runs][hi], cut[runs][hi] = cost, lo
    runs = min(range(1, MAX_SUFFIX_BUCKETS + 1), key=lambda r: best[r][count])
    buckets, hi = [], count
    while runs > 0:
        lo = cut[runs][hi]
        buckets.append(list(range(lo, hi)))
        hi, runs = lo, runs - 1
    return buckets[::-1]
