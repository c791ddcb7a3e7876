"""Keyed sampling: token randomness that depends only on *what* is sampled, not on batch layout.

A stream RNG (``torch.multinomial`` after ``torch.manual_seed``) hands out numbers in the order
rows sit in a batch, so the tokens a prompt gets change with the batch size, the padding, the
number of ranks and the position of a prompt in the list. Here the one uniform that picks token
``t`` of sample ``i`` of prompt ``key`` under ``seed`` is a pure function of those four integers:

    u = philox4x32_10(counter=(t, i, key_lo, key_hi), key=(seed_lo, seed_hi))  -> 53-bit double

Philox4x32-10 is the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
numbers: as easy as 1, 2, 3" (SC'11), the one behind cuRAND's and JAX's Philox; it is checked
against Random123's published known-answer vectors in ``tests/test_sampling_keyed.py``. It is
written with int64 tensor ops (32x32-bit products split into 16-bit halves so nothing overflows),
vectorised over every (row, step) pair of a generation at once.

A token is then drawn by inverse CDF on that one uniform: the first vocabulary index (in id
order) whose cumulative probability exceeds ``u * total``. One uniform per row instead of one
exponential per vocabulary entry (``torch.multinomial``) makes a draw cost a softmax plus a
two-level prefix sum (block sums, then one block), a few ms at 64 x 49k instead of ~100 ms.
Temperature, top-k and top-p are applied first, with transformers' semantics (see
:func:`filter_probs`); the log-probability of each sampled token under that sampling
distribution is returned as well (vLLM's ``processed_logprobs``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "keyed_uniforms",
    "philox4x32_10",
    "sample_from_logits",
]

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers (Random123)
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments (Random123)
#: Vocabulary block for the two-level inverse CDF: sums of blocks are vectorised reductions,
#: only one block per row needs a sequential prefix sum.
_CDF_BLOCK = 256


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``a * b`` for a 32-bit constant ``a`` and int64 ``b`` in [0, 2^32).

    The 64-bit product does not fit a signed int64, so ``b`` is split into 16-bit halves: each
    partial product is < 2^48 and the carries are added explicitly.
    """
    low_part = a * (b & _MASK16)  # < 2^48
    high_part = a * (b >> 16)  # < 2^48, weight 2^16
    mid = low_part + ((high_part & _MASK16) << 16)  # < 2^49
    lo = mid & _MASK32
    hi = (high_part >> 16) + (mid >> 32)
    return hi & _MASK32, lo


def philox4x32_10(
    counter: Sequence[torch.Tensor], key: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32 with 10 rounds on int64 tensors holding 32-bit words (broadcast together).

    Returns the four 32-bit output words, as int64 tensors in [0, 2^32).
    """
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) & _MASK32 for c in counter)
    k0, k1 = key[0] & _MASK32, key[1] & _MASK32
    for round_index in range(10):
        if round_index:
            k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo32(_PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(_PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def keyed_uniforms(
    seed: int, keys: torch.Tensor, samples: torch.Tensor, steps: int | torch.Tensor
) -> torch.Tensor:
    """Uniforms in [0, 1) (float64, 53 random bits) for every row and decoding step.

    ``keys`` and ``samples`` are int64 ``[rows]`` (prompt key and sample index of each row);
    ``steps`` is a count (steps ``0..steps-1``) or an int64 tensor of step indices. Returns
    ``[rows, len(steps)]``. Entry ``[r, t]`` depends only on ``(seed, keys[r], samples[r], t)``.
    """
    if seed < 0 or keys.min().item() < 0 or samples.min().item() < 0:
        raise ValueError("seed, keys and sample indices must be non-negative")
    step_index = torch.arange(steps) if isinstance(steps, int) else steps
    rows = keys.to(torch.int64)[:, None]
    words = philox4x32_10(
        (step_index.to(torch.int64)[None, :], samples.to(torch.int64)[:, None], rows, rows >> 32),
        (seed & _MASK32, (seed >> 32) & _MASK32),
    )
    # 27 + 26 bits -> an exact double in [0, 1), the same construction as numpy's random_sample.
    mantissa = (words[0] >> 5) * (1 << 26) + (words[1] >> 6)
    return mantissa.to(torch.float64) * (1.0 / (1 << 53))


def filter_probs(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised probabilities of the sampling distribution and its log-normaliser.

    Follows transformers' warpers in their order: divide by ``temperature``, keep the ``top_k``
    largest logits (ties with the k-th kept), then keep the smallest set of most likely tokens
    whose mass reaches ``top_p`` (a token is kept iff the mass of tokens more likely than it is
    below ``top_p``). Returns ``(weights, log_total)`` with ``weights`` fp32 ``[rows, vocab]``,
    zero outside the kept set, and ``log p(token) = log(weights[token]) - log_total``.
    """
    weights = _filtered_weights(logits, temperature, top_k, top_p)
    return weights, _block_cdf(weights)[:, -1:].log().float()


def _filtered_weights(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    scaled = logits.float()
    if temperature != 1.0:
        scaled = scaled / temperature
    if top_k and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    peak = scaled.amax(dim=-1, keepdim=True)
    # In place on our own copy: two fewer [rows, vocab] allocations per decoding step.
    weights = (scaled - peak) if scaled is logits else scaled.sub_(peak)
    weights = weights.exp_()
    if top_p < 1.0:
        weights = _top_p_filter(weights, top_p)
    return weights


def _block_cdf(weights: torch.Tensor) -> torch.Tensor:
    """Cumulative sums over vocabulary blocks, float64 ``[rows, blocks]``.

    Every sum here has a fixed order that depends only on the row itself: blocks of 256 are
    summed in fp32 (relative error ~1e-7), then accumulated in order in fp64. A plain
    ``sum(-1)`` over the vocabulary may be split across threads differently for 1 row than
    for 64, which would make a row's normaliser, and so its draws, depend on the batch.
    """
    rows, vocab = weights.shape
    pad = (-vocab) % _CDF_BLOCK
    padded = torch.nn.functional.pad(weights, (0, pad)) if pad else weights
    return torch.cumsum(padded.view(rows, -1, _CDF_BLOCK).sum(dim=-1).double(), dim=-1)


def _top_p_filter(weights: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail beyond the nucleus. A full sort of 49k entries per row costs ~0.3 s at 64
    rows, so the nucleus is looked for among the 512 largest first; rows whose top 512 do not
    reach ``top_p`` (flat distributions) fall back to a full sort."""
    total = _block_cdf(weights)[:, -1:].float()
    candidates = min(512, weights.shape[-1])
    top = torch.topk(weights, candidates, dim=-1).values  # descending
    thresholds = _nucleus_threshold(top, total, top_p)
    missing = torch.isnan(thresholds).squeeze(-1)
    if bool(missing.any()):
        full = torch.sort(weights[missing], dim=-1, descending=True).values
        # Over the whole vocabulary the nucleus always closes (an fp32 shortfall of the total
        # just keeps every token), so NaN means "keep all" here.
        fallback = _nucleus_threshold(full, total[missing], top_p)
        thresholds[missing] = torch.where(torch.isnan(fallback), 0.0, fallback)
    return weights.masked_fill(weights < thresholds, 0.0)


def _nucleus_threshold(descending: torch.Tensor, total: torch.Tensor, top_p: float) -> torch.Tensor:
    """Smallest kept weight per row, NaN where the given candidates do not reach ``top_p``."""
    mass_before = (torch.cumsum(descending, dim=-1) - descending) / total
    keep = mass_before < top_p
    kept = keep.sum(dim=-1, keepdim=True)  # >= 1: the first candidate has nothing before it
    threshold = torch.gather(descending, -1, kept - 1)
    complete = (kept < descending.shape[-1]) | (
        (mass_before[:, -1:] + descending[:, -1:] / total) >= top_p
    )
    return torch.where(complete, threshold, torch.full_like(threshold, float("nan")))


def _inverse_cdf(
    weights: torch.Tensor, block_cdf: torch.Tensor, uniforms: torch.Tensor
) -> torch.Tensor:
    """First index whose cumulative weight exceeds ``u * total``, per row.

    Two levels: block sums locate the block, a prefix sum inside that block locates the token.
    Zero-weight entries can never be chosen (the cumulative sum does not grow across them).
    """
    rows, vocab = weights.shape
    pad = (-vocab) % _CDF_BLOCK
    padded = torch.nn.functional.pad(weights, (0, pad)) if pad else weights
    blocks = padded.view(rows, -1, _CDF_BLOCK)
    target = uniforms.to(torch.float64)[:, None] * block_cdf[:, -1:]
    block = torch.searchsorted(block_cdf, target, right=True).clamp_(max=block_cdf.shape[1] - 1)
    before = torch.where(
        block > 0, torch.gather(block_cdf, 1, (block - 1).clamp(min=0)), torch.zeros_like(target)
    )
    inside = torch.cumsum(blocks[torch.arange(rows), block.squeeze(1)].double(), dim=-1)
    offset = torch.searchsorted(inside, target - before, right=True).squeeze(1)
    # Rounding can put the target a hair past the block's own prefix sum: take its last
    # positive entry then (probability ~1e-16 per draw).
    last_positive = (inside < inside[:, -1:]).sum(dim=-1)
    offset = torch.minimum(offset, last_positive)
    return block.squeeze(1) * _CDF_BLOCK + offset


def sample_from_logits(
    logits: torch.Tensor,
    uniforms: torch.Tensor | None,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row; returns ``(tokens int64 [rows], logprobs fp32 [rows])``.

    ``temperature == 0`` is greedy (``uniforms`` unused; ties go to the lowest id, like
    ``argmax``) and the log-prob is then that of ``softmax(logits)``. Otherwise row ``r`` takes
    the inverse-CDF draw at ``uniforms[r]`` from the filtered distribution (see
    :func:`filter_probs`) and its log-prob under that distribution.
    """
    if temperature == 0.0:
        tokens = logits.argmax(dim=-1)
        weights = torch.exp(logits.float() - logits.float().amax(dim=-1, keepdim=True))
    else:
        if uniforms is None:
            raise ValueError("sampling needs one uniform per row")
        weights = _filtered_weights(logits, temperature, top_k, top_p)
    block_cdf = _block_cdf(weights)
    if temperature != 0.0:
        tokens = _inverse_cdf(weights, block_cdf, uniforms)
    chosen = weights.gather(-1, tokens[:, None]).double()
    return tokens, (chosen.log() - block_cdf[:, -1:].log()).float().squeeze(-1)
