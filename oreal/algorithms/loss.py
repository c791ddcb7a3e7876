"""The per-micro-batch loss: one entry point, :func:`compute_policy_loss`, for every algorithm.

Step protocol (what the trainer does around it):

1. ``res = compute_advantages(params, rewards, group_ids, uniforms=u)`` on the step's rewards.
2. Keep the rows with ``res.keep``; build ``LossNormalizers.from_masks(mask, res.positive,
   max_len=budget, dp_world_size=R)`` over the whole step (counts all-reduced across ranks)
   **before** the first backward.
3. For each micro-batch (any split, any packing of whole sequences):
   ``loss, parts = compute_policy_loss(params, logprobs=..., response_mask=..., ...)``;
   ``loss.backward()``. Gradients add up to exactly the full-step gradient; summing ``parts``
   over micro-batches and ranks gives the step's logged values.

The algorithm's ``policy_loss`` names a registered objective ``fn(inputs, params)``; the
generic ones are here (``pg``, ``ppo_clip``, ``sft``), OREAL's is in ``oreal_loss.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from oreal.algorithms.aggregation import (
    LossNormalizers,
    aggregate,
    denominator,
    masked_sum,
    zero_padding,
)
from oreal.algorithms.params import AlgorithmParams, PPOClipParams, TokenLossParams
from oreal.algorithms.policy_losses import (
    kl_and_entropy_terms,
    pg_loss,
    ppo_clip_loss,
    sft_loss,
)
from oreal.algorithms.registry import (
    ZERO_AT_ZERO_ADVANTAGE,
    get_policy_loss,
    register_policy_loss,
)

__all__ = ["LossInputs", "compute_policy_loss", "rows_without_gradient"]


@dataclass(frozen=True)
class LossInputs:
    """One micro-batch, as the policy losses read it.

    ``logprobs`` (with grad), ``response_mask``, ``old_logprobs``, ``ref_logprobs``,
    ``entropy`` (with grad if ``entropy_coef > 0``) and ``token_weights`` are ``[b, T]``;
    ``advantages`` ``[b]`` (or ``[b, T]``); ``positive`` and ``pass_rate`` ``[b]`` (OREAL).
    ``token_weights`` (ones when None, detached) scale only the policy term: it is where a
    token-level reward model plugs in (OREAL's w+/w-).
    """

    logprobs: Tensor
    response_mask: Tensor
    advantages: Tensor
    normalizers: LossNormalizers
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None
    entropy: Tensor | None = None
    token_weights: Tensor | None = None
    positive: Tensor | None = None
    pass_rate: Tensor | None = None

    def padded_zero(self) -> LossInputs:
        """At least float32, padded positions set to 0 (see ``zero_padding``)."""
        logprobs, old, ref, entropy, weights = zero_padding(
            self.response_mask,
            self.logprobs,
            self.old_logprobs,
            self.ref_logprobs,
            self.entropy,
            self.token_weights,
        )
        assert logprobs is not None
        return replace(
            self,
            logprobs=logprobs,
            old_logprobs=old,
            ref_logprobs=ref,
            entropy=entropy,
            token_weights=weights,
        )


def rows_without_gradient(params: AlgorithmParams, advantages: Tensor) -> Tensor:
    """Rows ``[B]`` (bool) whose loss is exactly 0 with a zero gradient, whatever the model
    outputs: the policy loss declares a zero term at zero advantage (``pg``, ``ppo_clip``,
    ``sft``: every term is a multiple of A_t), the row's advantages are all 0, and there is no
    KL or entropy term (β = α = 0). Their backward can be skipped without changing the update:
    the losses divide by global counts, so no other row's term depends on them. GRPO's
    all-correct and all-wrong groups are such rows (exactly 0 advantage, see the estimators).
    """
    rows = advantages.reshape(advantages.shape[0], -1)
    inert = (
        params.policy_loss in ZERO_AT_ZERO_ADVANTAGE
        and params.kl_coef == 0
        and params.entropy_coef == 0
    )
    if not inert:
        return torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    return (rows == 0).all(dim=1)


def compute_policy_loss(
    params: AlgorithmParams, **inputs: object
) -> tuple[Tensor, dict[str, Tensor]]:
    """This micro-batch's share of the step loss, and detached parts for logging.

    Keyword arguments are the fields of :class:`LossInputs`. The returned loss is multiplied by
    ``normalizers.dp_world_size`` (backends average gradients over ranks); the parts are not.
    Parts: ``pg_loss``, ``kl``, ``kl_loss`` (β·kl), ``entropy``, ``clip_frac`` and
    ``dual_clip_frac`` (fractions of the step's N tokens), ``loss``; OREAL adds ``pos_loss``
    and ``neg_loss``.
    """
    batch = LossInputs(**inputs)  # type: ignore[arg-type]
    loss, parts = get_policy_loss(params.policy_loss)(batch, params)
    parts["loss"] = loss.detach()
    return loss * float(batch.normalizers.dp_world_size), parts


def _finish(
    per_token: Tensor, batch: LossInputs, params: TokenLossParams, parts: dict[str, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """L = agg(w_t·ℓ_t) + β·agg(KL_t) - α·agg(H_t), with the algorithm's aggregation."""
    mask = batch.response_mask
    if batch.token_weights is not None:
        per_token = per_token * batch.token_weights.detach()
    total = aggregate(per_token, mask, params.aggregation, batch.normalizers)
    parts["pg_loss"] = total.detach()

    def reduce(values: Tensor) -> Tensor:
        return aggregate(values, mask, params.aggregation, batch.normalizers)

    extra, extra_parts = kl_and_entropy_terms(
        batch.logprobs,
        old_logprobs=batch.old_logprobs,
        ref_logprobs=batch.ref_logprobs,
        entropy=batch.entropy,
        kl_coef=params.kl_coef,
        kl_estimator=params.kl_estimator,
        kl_target=params.kl_target,
        entropy_coef=params.entropy_coef,
        reduce_kl=reduce,
        reduce_entropy=reduce,
    )
    parts.update(extra_parts)
    return total + extra, parts


@register_policy_loss("pg", params=TokenLossParams, zero_at_zero_advantage=True)
def pg_objective(batch: LossInputs, params: TokenLossParams) -> tuple[Tensor, dict[str, Tensor]]:
    """ℓ_t = -A_t·ρ_t (REINFORCE, Williams 1992; on-policy the gradient of -A_t·log π_θ)."""
    batch = batch.padded_zero()
    return _finish(pg_loss(batch.logprobs, batch.advantages, batch.old_logprobs), batch, params, {})


@register_policy_loss("ppo_clip", params=PPOClipParams, zero_at_zero_advantage=True)
def ppo_clip_objective(
    batch: LossInputs, params: PPOClipParams
) -> tuple[Tensor, dict[str, Tensor]]:
    """ℓ_t = -min(ρ_t A_t, clip(ρ_t, 1-ε_low, 1+ε_high) A_t), dual clip on A_t < 0
    (PPO arXiv 1707.06347 Eq. 7; DAPO arXiv 2503.14476; dual clip arXiv 1912.09729)."""
    batch = batch.padded_zero()
    per_token, info = ppo_clip_loss(
        batch.logprobs,
        batch.advantages,
        batch.old_logprobs,
        clip_eps_low=params.clip_eps_low,
        clip_eps_high=params.clip_eps_high,
        dual_clip=params.dual_clip,
    )
    n_all = denominator(batch.normalizers.num_tokens)
    parts = {
        "clip_frac": masked_sum(info.clipped.to(per_token.dtype), batch.response_mask) / n_all,
        "dual_clip_frac": masked_sum(info.dual_clipped.to(per_token.dtype), batch.response_mask)
        / n_all,
    }
    return _finish(per_token, batch, params, parts)


@register_policy_loss("sft", params=TokenLossParams, zero_at_zero_advantage=True)
def sft_objective(batch: LossInputs, params: TokenLossParams) -> tuple[Tensor, dict[str, Tensor]]:
    """ℓ_t = -A_t·log π_θ(y_t): behaviour cloning weighted by the advantage. RAFT's A is 1 on
    correct and 0 on wrong rows, so a correct row gets the plain NLL and a wrong one nothing
    (but still counts in the denominator when the method keeps it)."""
    batch = batch.padded_zero()
    return _finish(sft_loss(batch.logprobs, batch.advantages), batch, params, {})
