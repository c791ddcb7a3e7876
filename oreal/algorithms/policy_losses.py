"""Per-token policy losses, KL estimators and entropy: pure functions on ``[b, T]`` tensors.

Nothing here reduces over tokens; :func:`oreal.algorithms.aggregation.aggregate` does that with
global denominators. Conventions: ``logprobs`` are log π_θ(y_t | x, y_<t) of the sampled tokens
under the current policy (with grad); ``old_logprobs`` those under the rollout policy π_old
(``None``: on-policy, π_old = sg[π_θ], so the ratio is 1 in value and its gradient is
∇log π_θ); ``ref_logprobs`` those under the frozen reference π_ref; ``advantages`` broadcast
to ``[b, T]`` (a ``[b]`` tensor is expanded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")
KLTarget = Literal["ref", "old"]
KL_TARGETS: tuple[str, ...] = ("ref", "old")


def token_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    """Broadcast sequence-level ``[b]`` advantages to ``[b, T]`` (token-level ones pass through)."""
    if advantages.dim() == 1:
        return advantages.to(like.dtype).unsqueeze(-1).expand_as(like)
    if advantages.shape != like.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} vs logprobs {tuple(like.shape)}")
    return advantages.to(like.dtype)


def log_ratio(logprobs: Tensor, old_logprobs: Tensor | None) -> Tensor:
    """log ρ_t = log π_θ - log π_old, with π_old = sg[π_θ] when ``old_logprobs`` is None."""
    old = logprobs.detach() if old_logprobs is None else old_logprobs.detach()
    return logprobs - old


def pg_loss(logprobs: Tensor, advantages: Tensor, old_logprobs: Tensor | None = None) -> Tensor:
    """REINFORCE / importance-weighted policy gradient: ℓ_t = -A_t · ρ_t, ρ_t = π_θ/π_old.

    Williams 1992. On-policy (``old_logprobs=None``) ρ ≡ 1 in value and ∇ℓ = -A·∇log π_θ,
    the same gradient as -A·log π_θ; writing it with ρ keeps the value meaningful (= -A) and
    makes the off-policy case an unclipped importance-sampled gradient.
    """
    return -token_advantages(advantages, logprobs) * torch.exp(log_ratio(logprobs, old_logprobs))


@dataclass(frozen=True)
class ClipInfo:
    """Bool ``[b, T]`` maps of where PPO clipping is active (for clip-fraction logging)."""

    clipped: Tensor
    dual_clipped: Tensor


def ppo_clip_loss(
    logprobs: Tensor,
    advantages: Tensor,
    old_logprobs: Tensor | None = None,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.28,
    dual_clip: float | None = None,
) -> tuple[Tensor, ClipInfo]:
    """PPO clipped surrogate with separate lower/upper bounds and optional dual clip.

    ℓ_t = -min(ρ_t A_t, clip(ρ_t, 1 - ε_low, 1 + ε_high) A_t)
      (PPO, Schulman et al., arXiv 1707.06347, Eq. 7; ε_low = ε_high = 0.2 there and in GRPO;
       clip-higher ε_high = 0.28 from DAPO, arXiv 2503.14476, lets low-probability tokens with
       A > 0 grow faster and slows entropy collapse.)
    Dual clip (Ye et al., arXiv 1912.09729; c = 3 in RAFT++, arXiv 2504.11343), on A_t < 0
    only: ℓ_t ← min(ℓ_t, -c·A_t), which bounds the loss when ρ explodes on a penalised token.

    ``clipped`` marks tokens where the clipped branch is selected (gradient 0 there);
    ``dual_clipped`` those where the dual bound is. On-policy both are all False.
    """
    adv = token_advantages(advantages, logprobs)
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))
    unclipped = -adv * ratio
    clipped_obj = -adv * torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    loss = torch.maximum(unclipped, clipped_obj)
    clipped = clipped_obj > unclipped
    dual_clipped = torch.zeros_like(clipped)
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        bound = -dual_clip * adv
        dual_clipped = (adv < 0) & (bound < loss)
        loss = torch.where(dual_clipped, bound, loss)
    return loss, ClipInfo(clipped=clipped & ~dual_clipped, dual_clipped=dual_clipped)


def sft_loss(logprobs: Tensor, advantages: Tensor | None = None) -> Tensor:
    """Advantage-weighted negative log-likelihood ℓ_t = -A_t·log π_θ(y_t) (-log π_θ when
    ``advantages`` is None): behaviour cloning, RAFT's loss with A ∈ {0, 1}."""
    if advantages is None:
        return -logprobs
    return -token_advantages(advantages, logprobs) * logprobs


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator = "k3") -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) on samples from π_θ; Δ_t = log π_ref - log π_θ.

    J. Schulman, "Approximating KL Divergence" (2020):
    - k1 = -Δ (unbiased, can be negative; its gradient ∇log π_θ has mean 0, so as a loss
      term it does nothing useful: use it as a reward penalty);
    - k2 = ½Δ² (biased, ≥ 0; gradient (log π_θ - log π_ref)·∇log π_θ, the forward-KL gradient);
    - k3 = e^Δ - Δ - 1 (unbiased, ≥ 0, 0 iff equal; gradient (1 - π_ref/π_θ)·∇log π_θ).
    OREAL (β = 0.01, config ``kl_type="unbias"``), 1-shot RLVR and RAFT use k3 in the loss.
    """
    delta = ref_logprobs.detach() - logprobs
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta**2
    if estimator == "k3":
        return torch.exp(delta) - delta - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {KL_ESTIMATORS}")


def kl_target_logprobs(
    kl_target: KLTarget,
    logprobs: Tensor,
    old_logprobs: Tensor | None,
    ref_logprobs: Tensor | None,
) -> Tensor | None:
    """Log-probs the KL is taken against: the frozen reference (``"ref"``, OREAL release,
    GRPO) or the rollout policy (``"old"``, OREAL paper Eq. 11; sg[π_θ] when on-policy, which
    makes the KL identically 0). ``None`` when ``"ref"`` is asked for and not given.
    """
    if kl_target == "ref":
        return ref_logprobs
    if kl_target == "old":
        return logprobs.detach() if old_logprobs is None else old_logprobs
    raise ValueError(f"unknown kl_target {kl_target!r}; expected one of {KL_TARGETS}")


def kl_and_entropy_terms(
    logprobs: Tensor,
    *,
    old_logprobs: Tensor | None,
    ref_logprobs: Tensor | None,
    entropy: Tensor | None,
    kl_coef: float,
    kl_estimator: KLEstimator,
    kl_target: KLTarget,
    entropy_coef: float,
    reduce_kl: Callable[[Tensor], Tensor],
    reduce_entropy: Callable[[Tensor], Tensor],
) -> tuple[Tensor, dict[str, Tensor]]:
    """β·reduce_kl(k_t) - α·reduce_entropy(H_t), and the detached parts ``kl``, ``kl_loss``,
    ``entropy``. The reductions are the caller's (an aggregation mode, or OREAL's N / N-).

    The KL is logged whenever its target is available, even with β = 0; a missing reference
    with β > 0, or a missing entropy with α > 0, is an error rather than a silent 0.
    """
    add = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    parts: dict[str, Tensor] = {}
    target = kl_target_logprobs(kl_target, logprobs, old_logprobs, ref_logprobs)
    if target is None and kl_coef > 0:
        raise ValueError("kl_coef > 0 with kl_target='ref' needs ref_logprobs")
    if target is not None:
        kl = reduce_kl(kl_penalty(logprobs, target, kl_estimator))
        add = add + kl_coef * kl
        parts["kl"] = kl.detach()
        parts["kl_loss"] = (kl_coef * kl).detach()
    if entropy is not None:
        ent = reduce_entropy(entropy)
        add = add - entropy_coef * ent
        parts["entropy"] = ent.detach()
    elif entropy_coef > 0:
        raise ValueError("entropy_coef > 0 needs the entropy tensor")
    return add, parts


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Token entropy H_t = -Σ_v π(v) log π(v) of ``[..., V]`` logits (kept differentiable).

    The entropy bonus L ← L - α·agg(H) (1-shot RLVR, arXiv 2504.20571: α = 0.001) needs the
    full distribution. The trainer gets H_t from :func:`oreal.models.token_logprobs`
    (``with_entropy=True``), which computes it chunk by chunk; this is the plain reference.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
