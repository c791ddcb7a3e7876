"""Trainer / rollout-engine mismatch: truncated importance sampling (TIS) of the policy gradient.

An inference engine (vLLM, or bf16 CPU decoding) samples from probabilities that differ slightly
from the trainer's for the same weights (other kernels, precision, batch shapes), so rollouts
are mildly off-policy. Following Yao, Liu, Zhang, Dong, Shang and Gao, "Your Efficient RL
Framework Secretly Brings You Off-Policy RL Training" (2025), the per-token policy-gradient term
is multiplied by the truncated, detached ratio

    w_t = min(pi_trainer(y_t | ...) / pi_engine(y_t | ...), cap)

with ``pi_engine`` the probability the engine sampled ``y_t`` with (``GenerationOutput.logprobs``)
and ``pi_trainer`` the trainer's probability of the same token under the weights that generated
the rollout (the "old" log-probs). Their recipe uses ``cap = 2`` (verl exposes it as
``tis_imp_ratio_cap``, NeMo-RL as ``truncated_importance_sampling_ratio``). The trainer must
score at the sampling temperature for the ratio to compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oreal.rollout.base import GenerationOutput

__all__ = ["mismatch_metrics", "pad_rollout_logprobs", "truncated_importance_weights"]


def truncated_importance_weights(
    trainer_logprobs: torch.Tensor,
    engine_logprobs: torch.Tensor,
    cap: float = 2.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``min(exp(trainer - engine), cap)`` per token, detached; 0 where ``mask`` is false.

    Multiply the per-token policy-gradient loss by it (before aggregation); the weights carry
    no gradient, so the gradient stays that of the trainer's log-probs.
    """
    if cap <= 0:
        raise ValueError("cap must be positive")
    if trainer_logprobs.shape != engine_logprobs.shape:
        raise ValueError(
            f"shape mismatch: trainer {tuple(trainer_logprobs.shape)} vs engine "
            f"{tuple(engine_logprobs.shape)}"
        )
    log_ratio = (trainer_logprobs.detach().float() - engine_logprobs.float()).clamp(max=20.0)
    weights = torch.exp(log_ratio).clamp(max=cap)
    if mask is not None:
        weights = weights.masked_fill(~mask.bool(), 0.0)
    return weights


def mismatch_metrics(
    trainer_logprobs: torch.Tensor,
    engine_logprobs: torch.Tensor,
    mask: torch.Tensor,
    cap: float = 2.0,
) -> dict[str, float]:
    """How far the engine is from the trainer, over the tokens of ``mask``: mean ratio, the
    fraction of tokens whose ratio the cap truncates, and the k3 estimate of
    KL(engine || trainer), ``E[r - 1 - log r]`` with ``r = pi_trainer / pi_engine`` (Schulman,
    "Approximating KL divergence", 2020)."""
    selected = mask.bool()
    if not bool(selected.any()):
        return {"is_ratio_mean": 1.0, "is_truncated_frac": 0.0, "engine_kl_k3": 0.0}
    log_ratio = (trainer_logprobs.detach().float() - engine_logprobs.float())[selected]
    ratio = torch.exp(log_ratio.clamp(max=20.0))
    return {
        "is_ratio_mean": float(ratio.mean()),
        "is_truncated_frac": float((ratio > cap).float().mean()),
        "engine_kl_k3": float((ratio - 1 - log_ratio).mean()),
    }


def pad_rollout_logprobs(
    outputs: Sequence[GenerationOutput], width: int | None = None
) -> torch.Tensor:
    """The engine log-probs of ``outputs`` as ``[rows, width]`` fp32, response-aligned (token
    ``t`` of a response in column ``t``, zero padding), the layout of the trainer's compact
    per-token log-probs. Raises if a backend did not provide them."""
    missing = [i for i, o in enumerate(outputs) if o.logprobs is None]
    if missing:
        raise ValueError(f"outputs {missing[:5]} carry no engine log-probs (HF backend?)")
    width = max((len(o.response_ids) for o in outputs), default=0) if width is None else width
    table = torch.zeros(len(outputs), width)
    for row, out in enumerate(outputs):
        values = out.logprobs or []
        if len(values) != len(out.response_ids):
            raise ValueError(
                f"output {row}: {len(values)} log-probs for {len(out.response_ids)} tokens"
            )
        kept = values[:width]
        table[row, : len(kept)] = torch.tensor(kept)
    return table
