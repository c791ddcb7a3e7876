"""The math of inference-time search, as pure functions of scores: no model, no text.

* Step-score aggregation (algorithms.md §5.4): ``last`` s_K (the particle-filtering code),
  ``min`` min_k s_k, ``prod`` Π_k s_k (its_hub's examples), ``mean``, ``max``, and ``model``: the
  scorer saw the whole prefix as one step and its single score is the answer (Puri et al.,
  arXiv 2502.01618, §4; reward_hub ``model_aggregate``).
* Particle resampling weights (Puri et al., arXiv 2502.01618, §3; algorithms.md §6.1)::

      logit_i = log r_i - log(1 - r_i)     (r clipped to [eps, 1 - eps], eps = 1e-7 as its_hub)
      w       = softmax(logit / τ)         (τ = 1  ⇒  w_i ∝ r_i / (1 - r_i))

  drawn multinomially with replacement (the paper) or systematically (its_hub's option: one
  uniform offset, N evenly spaced pointers; lower variance, same expectation).
* Weighted majority (GenPRM ``aggregation/selection``; algorithms.md §5.2): the answer group with
  the largest sum of solution scores wins, and its best-scored solution is returned.

Randomness comes in as a ``numpy.random.Generator``; :func:`keyed_rng` builds one from what the
draw is for (seed, problem, sample, sweep, step), never from the order work happens in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = [
    "AGGREGATIONS",
    "RESAMPLING",
    "Aggregation",
    "Resampling",
    "aggregate_scores",
    "best_index",
    "keyed_rng",
    "logit",
    "multinomial_resample",
    "resample",
    "resampling_weights",
    "stable_key",
    "systematic_resample",
    "top_k_indices",
    "weighted_vote",
]

Aggregation = Literal["last", "min", "prod", "mean", "max", "model"]
AGGREGATIONS: tuple[str, ...] = ("last", "min", "prod", "mean", "max", "model")
Resampling = Literal["multinomial", "systematic"]
RESAMPLING: tuple[str, ...] = ("multinomial", "systematic")
#: its_hub's clip of r before the logit; the original code uses float64 machine epsilon.
LOGIT_EPS = 1e-7


def aggregate_scores(step_scores: Sequence[float], aggregation: Aggregation) -> float:
    """One solution score from its step scores (each in [0, 1]).

    ``model`` expects exactly one score (the scorer was given the prefix as a single step).
    """
    if not step_scores:
        raise ValueError("no step scores to aggregate")
    scores = [float(s) for s in step_scores]
    if aggregation == "last":
        return scores[-1]
    if aggregation == "min":
        return min(scores)
    if aggregation == "max":
        return max(scores)
    if aggregation == "prod":
        return math.prod(scores)
    if aggregation == "mean":
        return sum(scores) / len(scores)
    if aggregation == "model":
        if len(scores) != 1:
            raise ValueError(f"'model' aggregation reads one score per solution, got {len(scores)}")
        return scores[0]
    raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")


def logit(reward: float, eps: float = LOGIT_EPS) -> float:
    """log r - log(1 - r), with r clipped to [eps, 1 - eps] so that 0 and 1 stay finite."""
    r = min(max(float(reward), eps), 1.0 - eps)
    return math.log(r) - math.log1p(-r)


def resampling_weights(rewards: Sequence[float], tau: float = 1.0) -> np.ndarray:
    """softmax(logit(r) / τ): the particle-filtering resampling distribution (sums to 1)."""
    if not tau > 0:
        raise ValueError(f"the softmax temperature tau must be positive, got {tau}")
    if len(rewards) == 0:
        raise ValueError("no rewards to weight")
    logits = np.array([logit(r) for r in rewards], dtype=np.float64) / tau
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def multinomial_resample(weights: Sequence[float], n: int, rng: np.random.Generator) -> list[int]:
    """``n`` indices drawn independently with replacement, P(i) = weights[i]."""
    p = _normalised(weights)
    return [int(i) for i in rng.choice(len(p), size=n, replace=True, p=p)]


def systematic_resample(weights: Sequence[float], n: int, rng: np.random.Generator) -> list[int]:
    """``n`` indices from one uniform offset u: pointer j = (u + j) / n on the weights' CDF.

    Index i appears floor or ceil of n·w_i times (its expected count), in increasing order.
    """
    p = _normalised(weights)
    pointers = (rng.random() + np.arange(n)) / n
    cdf = np.cumsum(p)
    cdf[-1] = 1.0  # no pointer may fall past the end through rounding
    return [int(i) for i in np.searchsorted(cdf, pointers, side="right")]


def resample(
    weights: Sequence[float], n: int, rng: np.random.Generator, method: Resampling
) -> list[int]:
    """Dispatch to :func:`multinomial_resample` or :func:`systematic_resample`."""
    if method == "multinomial":
        return multinomial_resample(weights, n, rng)
    if method == "systematic":
        return systematic_resample(weights, n, rng)
    raise ValueError(f"unknown resampling {method!r}; expected one of {RESAMPLING}")


def top_k_indices(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` highest scores, best first; ties go to the earlier index."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return order[: max(0, k)]


def best_index(scores: Sequence[float]) -> int:
    """argmax, the earliest on ties."""
    if len(scores) == 0:
        raise ValueError("no scores")
    return top_k_indices(scores, 1)[0]


def weighted_vote(groups: Sequence[int | None], scores: Sequence[float]) -> int | None:
    """Index of the solution that weighted majority returns, or ``None`` when nobody voted.

    ``groups[i]`` is solution i's answer group (``None``: no answer, no vote). The group with the
    largest sum of scores wins (ties: the group whose first member comes first); within it, the
    highest-scored member is returned (ties: the earliest). With all scores equal this is plain
    majority voting returning the winning group's first member.
    """
    if len(groups) != len(scores):
        raise ValueError("groups and scores must have the same length")
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    for index, group in enumerate(groups):
        if group is None:
            continue
        totals[group] = totals.get(group, 0.0) + float(scores[index])
        first.setdefault(group, index)
    if not totals:
        return None
    winner = min(totals, key=lambda g: (-totals[g], first[g]))
    members = [i for i, g in enumerate(groups) if g == winner]
    return min(members, key=lambda i: (-float(scores[i]), i))


def keyed_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator determined by ``seed`` and ``keys`` (strings hashed stably with SHA-256)."""
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, str):
            digest = hashlib.sha256(key.encode("utf-8")).digest()
            words.extend(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
        else:
            words.append(int(key) & 0xFFFFFFFF)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


def stable_key(*parts: int | str) -> int:
    """A non-negative 62-bit integer naming ``parts`` (SHA-256): a keyed generator's row key."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 2


def _normalised(weights: Sequence[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or (p < 0).any() or not p.sum() > 0:
        raise ValueError("weights must be a non-empty vector of non-negative numbers, not all 0")
    return p / p.sum()
