"""OREAL's token-level reward model, as pure tensor functions: weights, loss, metrics.

The token RM (Lyu et al., OREAL, arXiv 2502.06781, §2.4, Eq. 10-12) gives one logit h_t per
response token. It is trained with a *sequence-level* BCE on the outcome, and its logits are
turned into per-token weights of the policy loss: w+ on correct responses, w- on wrong ones.
Everything here works on the compact ``[B, R]`` response layout of
:func:`oreal.models.token_logprobs` (``mask[b, j]``: row b has a j-th response token) and is
model-free; the module that produces the logits is :mod:`oreal.token_rm.model`.

Formulas (S: global count of trained sequences, y_s in {0, 1} their correctness, T_s their
response lengths; sg[.] stop-gradient):

    RM loss        L_RM = (1/S) Σ_s BCE(σ(h̄_s), y_s),   h̄_s = (1/T_s) Σ_t h_{s,t}    (Eq. 12)
    probability    q_t  = σ((1/t) Σ_{k≤t} h_k)   ``cumulative_mean`` (the release, default)
                   q_t  = σ(h_t)                 ``per_token``       (the paper, Eq. 10)
    weights        w+_t = max(2 q_t - 1, 0)  on correct rows                        (Eq. 10)
                   w-_t = max(1 - 2 q_t, 0)  on wrong rows
    top-k variant  keep the top ⌊ratio·T⌋ tokens (at least 1) by p_t (q_t on correct rows,
                   1 - q_t on wrong ones), min-max normalise them to [0, 1], the rest 0.

The release (InternLM/OREAL ``train_oreal.py`` at 2859cc0) computes the weights as
``threshold_rescale(p, 0.5) = clamp((p - 0.5) / 0.5, 0, 1)``, which is the max(2q - 1, 0) form
above, and offers ``topk_rescale(p, ratio)`` (commented out in its configs, ratio 0.25).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

WeightSource = Literal["cumulative_mean", "per_token"]
WEIGHT_SOURCES: tuple[str, ...] = ("cumulative_mean", "per_token")

__all__ = [
    "WEIGHT_SOURCES",
    "TokenWeights",
    "WeightSource",
    "cumulative_mean",
    "oreal_token_weights",
    "roc_auc",
    "sequence_logits",
    "threshold_weights",
    "token_probabilities",
    "token_rm_loss",
    "topk_rescale",
]


def sequence_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """h̄_s = (1/T_s) Σ_t h_{s,t}: the mean token logit of each row ``[B]`` (differentiable).

    A row without response tokens gets 0 (σ = 0.5); the trainer never produces one.
    """
    mask = mask.bool()
    total = logits.masked_fill(~mask, 0.0).sum(dim=-1)
    return total / mask.sum(dim=-1).clamp(min=1).to(logits.dtype)


def token_rm_loss(
    logits: Tensor,
    mask: Tensor,
    labels: Tensor,
    num_seqs: int,
    *,
    dp_world_size: int = 1,
) -> Tensor:
    """This micro-batch's share of L_RM = (1/S) Σ_s BCE(σ(h̄_s), y_s) (OREAL Eq. 12).

    One binary cross-entropy **per sequence**, on the mean of its token logits, summed and
    divided by the global sequence count ``num_seqs`` = S of the whole step (all micro-batches
    and ranks), so the gradients of any micro-batch split add up to the full-batch gradient
    (arXiv 2502.06781; global counts as in the release). This is the release's
    ``token_level_rm_loss``; a per-token BCE against the sequence label is a known misreading
    (natolambert/rlhf-book issue #505) and is not what this computes.

    ``logits``: ``[b, R]`` token logits h (with grad); ``mask``: ``[b, R]``; ``labels``: ``[b]``
    in {0, 1}. The result is multiplied by ``dp_world_size`` (backends average gradients over
    ranks, see :mod:`oreal.algorithms.aggregation`).
    """
    if num_seqs < 1:
        raise ValueError(f"num_seqs must be >= 1, got {num_seqs}")
    # At least fp32 (bf16 logits under autocast), float64 kept as is (gradient checks).
    dtype = torch.promote_types(logits.dtype, torch.float32)
    sequence = sequence_logits(logits.to(dtype), mask)
    bce = F.binary_cross_entropy_with_logits(sequence, labels.to(dtype), reduction="sum")
    return bce * (float(dp_world_size) / num_seqs)


def cumulative_mean(logits: Tensor, mask: Tensor) -> Tensor:
    """(1/t) Σ_{k≤t} h_k over the response tokens of each row; 0 at padding."""
    mask = mask.bool()
    values = logits.masked_fill(~mask, 0.0)
    counts = mask.cumsum(dim=-1).clamp(min=1).to(values.dtype)
    return (values.cumsum(dim=-1) / counts).masked_fill(~mask, 0.0)


def token_probabilities(
    logits: Tensor, mask: Tensor, source: WeightSource = "cumulative_mean"
) -> Tensor:
    """q_t, the RM's probability that the response is on track at token t (no gradient).

    ``cumulative_mean``: q_t = σ((1/t) Σ_{k≤t} h_k), the release (``_cum_mean_rm_scores``);
    ``per_token``: q_t = σ(h_t), the paper's ω± = f(σ(w_t)) (arXiv 2502.06781, Eq. 10).
    Since the RM is trained on the mean logit over the whole response, the cumulative mean at
    the last token is exactly the sequence logit h̄ the loss sees. Padding gets 0.5.
    """
    mask = mask.bool()
    logits = logits.detach().float()
    if source == "cumulative_mean":
        running = cumulative_mean(logits, mask)
    elif source == "per_token":
        running = logits.masked_fill(~mask, 0.0)
    else:
        raise ValueError(f"unknown weight source {source!r}; expected one of {WEIGHT_SOURCES}")
    return torch.sigmoid(running)


def threshold_weights(q: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """(w+, w-) = (max(2q - 1, 0), max(1 - 2q, 0)) for every token (OREAL Eq. 10).

    Written as the release's ``threshold_rescale``: clamp((p - θ) / (1 - θ), 0, 1) with
    p = q for w+ and p = 1 - q for w-, θ = 0.5. The clamps keep each weight non-negative, so
    a correct response is never pushed down and a wrong one never pushed up, and at most one
    of the two is positive at any token (w+ > 0 iff q > 0.5, w- > 0 iff q < 0.5).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    q = q.detach()
    positive = ((q - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)
    negative = ((1.0 - q - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)
    return positive, negative


def topk_rescale(prob: Tensor, mask: Tensor, ratio: float = 0.25) -> Tensor:
    """Per row: keep the top ⌊ratio·T⌋ tokens by ``prob``, min-max normalise them to [0, 1].

    The release's ``topk_rescale`` (``correct_topk_ratio`` / ``incorrect_topk_ratio``, 0.25 in
    its commented-out config lines), row-wise over the ``[B, R]`` layout: the kept token with
    the highest ``prob`` gets 1, the lowest kept one 0, the others in between linearly; tokens
    outside the top k get 0. If all kept values are equal they all get 1 (as in the release),
    so unlike the threshold form a zero-initialised RM gives weight 1 to k arbitrary tokens.
    One deviation: k is at least 1, where the release's ``int(T·ratio)`` is 0 for T < 1/ratio
    and then fails on an empty ``topk``.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"topk ratio must be in (0, 1], got {ratio}")
    mask = mask.bool()
    prob = prob.detach().float()
    counts = mask.sum(dim=-1)
    k = torch.floor(counts.double() * ratio).long().clamp(min=1)
    k = torch.where(counts > 0, k, torch.zeros_like(k))
    ranked = prob.masked_fill(~mask, float("-inf"))
    values, order = torch.sort(ranked, dim=-1, descending=True, stable=True)
    width = prob.shape[-1]
    kept = torch.arange(width, device=prob.device)[None, :] < k[:, None]
    top = values[:, :1]
    low = values.gather(-1, (k - 1).clamp(min=0)[:, None])
    spread = top - low
    safe_spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    normalised = torch.where(spread > 0, (values - low) / safe_spread, torch.ones_like(values))
    sorted_out = torch.where(kept, normalised, torch.zeros_like(values))
    return torch.zeros_like(prob).scatter(-1, order, sorted_out).masked_fill(~mask, 0.0)


@dataclass(frozen=True)
class TokenWeights:
    """The weights of one step's kept rows, all ``[B, R]`` and detached.

    ``weights``: w+ on correct rows and w- on wrong rows (what ``token_weights`` of the policy
    loss takes); ``q``: the probabilities q_t they came from.
    """

    weights: Tensor
    q: Tensor


def oreal_token_weights(
    logits: Tensor,
    mask: Tensor,
    positive: Tensor,
    *,
    source: WeightSource = "cumulative_mean",
    topk_ratio: float | None = None,
) -> TokenWeights:
    """OREAL's importance weights from RM logits: w+ on correct rows, w- on wrong rows.

    arXiv 2502.06781, §2.4, Eq. 10-11; release form in the module docstring. ``logits``:
    ``[B, R]`` token logits h; ``positive``: ``[B]`` bool, the response was judged correct.
    With ``topk_ratio`` None the threshold form max(±(2q - 1), 0) is used (the release's
    ``threshold_rescale``), else :func:`topk_rescale` of q (correct rows) or 1 - q (wrong rows).
    Computed under stop-gradient: the weights never carry a gradient to the RM.
    """
    mask = mask.bool()
    with torch.no_grad():
        q = token_probabilities(logits, mask, source)
        rows = positive.bool().to(q.device)[:, None]
        if topk_ratio is None:
            w_pos, w_neg = threshold_weights(q)
            weights = torch.where(rows, w_pos, w_neg)
        else:
            weights = topk_rescale(torch.where(rows, q, 1.0 - q), mask, topk_ratio)
        weights = weights.masked_fill(~mask, 0.0)
    return TokenWeights(weights=weights, q=q.masked_fill(~mask, 0.0))


def roc_auc(scores: Tensor, labels: Tensor) -> float | None:
    """ROC-AUC of ``scores`` against 0/1 ``labels`` (ties count 1/2); None with one class only.

    The Mann-Whitney form: the probability that a random positive outscores a random negative.
    """
    scores = scores.detach().double().flatten()
    labels = labels.detach().bool().flatten()
    num_pos, num_neg = int(labels.sum()), int((~labels).sum())
    if num_pos == 0 or num_neg == 0:
        return None
    diff = scores[labels][:, None] - scores[~labels][None, :]
    wins = (diff > 0).double().sum() + 0.5 * (diff == 0).double().sum()
    return float(wins / (num_pos * num_neg))
