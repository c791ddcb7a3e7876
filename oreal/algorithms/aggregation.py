"""Loss aggregation with global denominators: exact under micro-batching and data parallelism.

Every reduction here is ``Σ (over this micro-batch's tokens or sequences) / D`` with ``D`` a
count over the **whole optimisation step** (all micro-batches, all data-parallel ranks),
computed once by :class:`LossNormalizers` before the first backward. Summing the micro-batch
losses, or accumulating their gradients, therefore gives exactly the full-batch loss and
gradient, whatever the split or the packing. A per-micro-batch mean would instead weight each
token by 1/(tokens in its micro-batch), which depends on how sequences happen to be packed
(TRL calls that mode ``bnpo``; it is not offered here).

Data parallelism (as in OREAL's release and verl's ``agg_loss``): with R ranks whose backend
*averages* gradients (DDP/FSDP), each micro-batch loss is multiplied by ``dp_world_size = R``;
the all-reduce mean then cancels it and the update equals the single-process full-batch
update. With R = 1 the factor is 1.
The entry points (``compute_policy_loss``, ``oreal_loss``) apply it; :func:`aggregate` returns
true values.

A row of a ``[b, T]`` tensor is one sequence (padded on the right or anywhere, the mask says
which positions are response tokens); a sequence is never split across micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from oreal.algorithms.registry import get_aggregation, register_aggregation


@dataclass(frozen=True)
class LossNormalizers:
    """Global denominators of one optimisation step (summed over micro-batches and ranks).

    - ``num_tokens`` (N): response tokens of all kept sequences.
    - ``num_pos_tokens`` (N+) / ``num_neg_tokens`` (N-): those of correct / wrong sequences
      (OREAL's split normalisation; N = N+ + N-).
    - ``num_seqs`` (B or S): kept sequences.
    - ``max_len`` (L_max): the generation budget, for Dr.GRPO's constant normaliser B·L_max.
      It is the *budget* (max_new_tokens), not the longest response seen, so the normaliser
      does not move with the lengths actually generated.
    - ``dp_world_size`` (R): data-parallel ranks whose gradients the backend averages.

    A zero count (say no negative in the step) is used as 1: the matching sum is 0 anyway.
    """

    num_tokens: int
    num_seqs: int
    num_pos_tokens: int = 0
    num_neg_tokens: int = 0
    max_len: int | None = None
    dp_world_size: int = 1

    def __post_init__(self) -> None:
        if self.dp_world_size < 1:
            raise ValueError(f"dp_world_size must be >= 1, got {self.dp_world_size}")

    @classmethod
    def from_masks(
        cls,
        response_mask: Tensor | Sequence[Tensor],
        positive: Tensor | Sequence[Tensor] | None = None,
        *,
        max_len: int | None = None,
        dp_world_size: int = 1,
    ) -> LossNormalizers:
        """Count the step's tokens and sequences from its masks, once, before any backward.

        ``response_mask`` is the ``[B, T]`` mask of the whole step, or a list of micro-batch
        masks (widths may differ); ``positive`` the matching ``[B]`` bool kinds (or list).
        Under data parallelism, sum :meth:`to_tensor` over ranks (``all_reduce(SUM)``) and
        rebuild with :meth:`from_tensor`.
        """
        masks = [response_mask] if isinstance(response_mask, Tensor) else list(response_mask)
        if positive is None:
            kinds: list[Tensor | None] = [None] * len(masks)
        else:
            kinds = [positive] if isinstance(positive, Tensor) else list(positive)
        if len(kinds) != len(masks):
            raise ValueError("response_mask and positive must have the same number of parts")
        tokens = seqs = pos = neg = 0
        for mask, kind in zip(masks, kinds, strict=True):
            per_seq = mask.bool().sum(dim=-1)
            tokens += int(per_seq.sum())
            seqs += int(mask.shape[0])
            if kind is not None:
                kind = kind.bool()
                pos += int(per_seq[kind].sum())
                neg += int(per_seq[~kind].sum())
        return cls(tokens, seqs, pos, neg, max_len, dp_world_size)

    def to_tensor(self) -> Tensor:
        """The additive counts as a long tensor, to all-reduce (SUM) across ranks."""
        counts = [self.num_tokens, self.num_seqs, self.num_pos_tokens, self.num_neg_tokens]
        return torch.tensor(counts, dtype=torch.long)

    @classmethod
    def from_tensor(
        cls, counts: Tensor, *, max_len: int | None = None, dp_world_size: int = 1
    ) -> LossNormalizers:
        tokens, seqs, pos, neg = (int(v) for v in counts.tolist())
        return cls(tokens, seqs, pos, neg, max_len, dp_world_size)


def denominator(count: int | float) -> float:
    """A global count as a divisor; 0 (no such tokens in the step) becomes 1, the sum is 0."""
    return float(max(count, 1))


def zero_padding(mask: Tensor, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Upcast ``[b, T]`` inputs to at least float32 and set their padded positions to 0.

    Done once at the entry points, before any exp or ratio: a -inf log-prob of a pad token
    would otherwise yield NaN in the backward pass (0·inf), even though the forward masks it.
    ``where`` sends a zero gradient to the padded positions. ``None`` passes through.
    """
    keep = mask.bool()
    out: list[Tensor | None] = []
    for x in tensors:
        if x is not None:
            x = x.to(torch.promote_types(x.dtype, torch.float32))
            x = torch.where(keep, x, torch.zeros((), dtype=x.dtype))
        out.append(x)
    return tuple(out)


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Σ values over the masked positions (mask bool or 0/1, broadcast to values).

    Selects with ``where`` rather than multiplying, so a non-finite value at a padded position
    (a -inf log-prob of a pad token, say) cannot turn the sum into NaN.
    """
    return torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype)).sum()


@register_aggregation("token_mean")
def token_mean(values: Tensor, mask: Tensor, normalizers: LossNormalizers) -> Tensor:
    """Σ_i Σ_t ℓ_{i,t} / N: every token weighs the same (DAPO, arXiv 2503.14476; verl
    ``token-mean``; TRL ``dapo``)."""
    return masked_sum(values, mask) / denominator(normalizers.num_tokens)


@register_aggregation("seq_mean_token_mean")
def seq_mean_token_mean(values: Tensor, mask: Tensor, normalizers: LossNormalizers) -> Tensor:
    """(1/B) Σ_i (1/|o_i|) Σ_t ℓ_{i,t} (GRPO, arXiv 2402.03300 Eq. 3; TRL ``grpo``; verl
    ``seq-mean-token-mean``): long responses get less weight per token."""
    mask = mask.bool()
    lengths = mask.sum(dim=-1).clamp(min=1).to(values.dtype)
    per_seq = torch.where(mask, values, torch.zeros((), dtype=values.dtype)).sum(dim=-1)
    return (per_seq / lengths).sum() / denominator(normalizers.num_seqs)


@register_aggregation("seq_mean_token_sum")
def seq_mean_token_sum(values: Tensor, mask: Tensor, normalizers: LossNormalizers) -> Tensor:
    """(1/B) Σ_i Σ_t ℓ_{i,t} (verl ``seq-mean-token-sum``)."""
    return masked_sum(values, mask) / denominator(normalizers.num_seqs)


@register_aggregation("dr_grpo")
def dr_grpo_constant(values: Tensor, mask: Tensor, normalizers: LossNormalizers) -> Tensor:
    """Σ_i Σ_t ℓ_{i,t} / (B·L_max) (Dr.GRPO, arXiv 2503.20783; TRL ``dr_grpo``): equal token
    weight and a step size that does not move with the lengths generated."""
    if normalizers.max_len is None:
        raise ValueError("aggregation 'dr_grpo' needs LossNormalizers.max_len (the budget)")
    return masked_sum(values, mask) / denominator(normalizers.num_seqs * normalizers.max_len)


def aggregate(values: Tensor, mask: Tensor, mode: str, normalizers: LossNormalizers) -> Tensor:
    """Reduce per-token values ``[b, T]`` of one micro-batch to its share of the step's loss.

    ``mode`` is a registered aggregation (``token_mean``, ``seq_mean_token_mean``,
    ``seq_mean_token_sum``, ``dr_grpo``, or one a plug-in registered); ``mask`` marks the
    response tokens of kept sequences. The result is the micro-batch's *value* share, without
    the ``dp_world_size`` factor: the loss entry points multiply by it once, so the logged parts
    stay true values when summed over micro-batches and ranks.
    """
    return get_aggregation(mode)(values, mask.bool(), normalizers)
