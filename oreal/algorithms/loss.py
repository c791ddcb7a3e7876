"""The per-micro-batch entry point the trainer calls: one function for every registered method.

Step protocol (what the trainer does around it):

1. ``rewards = rewards_from_correct(correct, params.reward_scale)``;
   ``res = compute_advantages(params, rewards, group_ids, generator=g)``.
2. Keep the rows with ``res.keep``; build ``LossNormalizers.from_masks(mask, res.positive,
   max_len=budget, dp_world_size=R)`` over the whole step (all-reduce the counts across ranks)
   **before** the first backward.
3. For each micro-batch (any split, any packing of whole sequences):
   ``loss, parts = compute_policy_loss(params, ...)``; ``loss.backward()``. Gradients add up to
   exactly the full-step gradient; summing ``parts`` over micro-batches and ranks gives the
   step's logged values.

Several epochs / mini-batches over one rollout batch are the trainer's loop: pass the rollout
policy's ``old_logprobs`` then (``None`` means on-policy, ratio 1).
"""

from __future__ import annotations

from torch import Tensor

from oreal.algorithms.aggregation import (
    LossNormalizers,
    aggregate,
    denominator,
    masked_sum,
    zero_padding,
)
from oreal.algorithms.oreal_loss import oreal_loss
from oreal.algorithms.policy_losses import (
    kl_and_entropy_terms,
    pg_loss,
    ppo_clip_loss,
    sft_loss,
)
from oreal.algorithms.registry import AlgorithmParams


def compute_policy_loss(
    params: AlgorithmParams,
    *,
    logprobs: Tensor,
    response_mask: Tensor,
    advantages: Tensor,
    normalizers: LossNormalizers,
    old_logprobs: Tensor | None = None,
    ref_logprobs: Tensor | None = None,
    entropy: Tensor | None = None,
    token_weights: Tensor | None = None,
    positive: Tensor | None = None,
    pass_rate: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """This micro-batch's share of the step loss, and detached parts for logging.

    Shapes: ``logprobs`` (with grad), ``response_mask``, ``old_logprobs``, ``ref_logprobs``,
    ``entropy`` (with grad if ``entropy_coef > 0``), ``token_weights``: ``[b, T]``;
    ``advantages`` ``[b]`` (or ``[b, T]``), ``positive`` and ``pass_rate`` ``[b]`` (OREAL).

    For ``policy_loss`` in {pg, ppo_clip, sft}, with ℓ_t the per-token loss of
    :mod:`oreal.algorithms.policy_losses` and agg the ``aggregation`` mode:

        L = agg(w_t · ℓ_t) + β · agg(k_t) - α · agg(H_t)

    ``token_weights`` w (ones by default, detached) scale only the policy term; they are where
    a token-level reward model plugs in. ``policy_loss="oreal"`` dispatches to
    :func:`oreal.algorithms.oreal_loss.oreal_loss` (split N+/N-/N normalisation).

    The returned loss is multiplied by ``normalizers.dp_world_size``; the parts are not.
    Parts: ``pg_loss``, ``kl``, ``kl_loss`` (β·kl), ``entropy``, ``clip_frac`` and
    ``dual_clip_frac`` (fractions of the step's N tokens), ``loss``; OREAL adds ``pos_loss``
    and ``neg_loss``.
    """
    if params.policy_loss == "oreal":
        if positive is None:
            raise ValueError("the OREAL loss needs `positive` (AdvantageResult.positive)")
        return oreal_loss(
            logprobs,
            response_mask,
            advantages,
            positive,
            normalizers,
            old_logprobs=old_logprobs,
            ref_logprobs=ref_logprobs,
            token_weights=token_weights,
            pass_rate=pass_rate,
            entropy=entropy,
            positive_factor=params.positive_factor,
            negative_factor=params.negative_factor,
            pos_mult_adv=params.pos_mult_adv,
            neg_weight=params.neg_weight,
            neg_surrogate=params.neg_surrogate,
            kl_coef=params.kl_coef,
            kl_estimator=params.kl_estimator,
            kl_target=params.kl_target,
            kl_normalizer=params.kl_normalizer,
            entropy_coef=params.entropy_coef,
        )

    logprobs, old_logprobs, ref_logprobs, entropy, token_weights = zero_padding(
        response_mask, logprobs, old_logprobs, ref_logprobs, entropy, token_weights
    )
    assert logprobs is not None
    mode = params.aggregation
    parts: dict[str, Tensor] = {}
    if params.policy_loss == "pg":
        per_token = pg_loss(logprobs, advantages, old_logprobs)
    elif params.policy_loss == "ppo_clip":
        per_token, info = ppo_clip_loss(
            logprobs,
            advantages,
            old_logprobs,
            clip_eps_low=params.clip_eps_low,
            clip_eps_high=params.clip_eps_high,
            dual_clip=params.dual_clip,
        )
        n_all = denominator(normalizers.num_tokens)
        frac = {"clip_frac": info.clipped, "dual_clip_frac": info.dual_clipped}
        for key, flags in frac.items():
            parts[key] = masked_sum(flags.to(logprobs.dtype), response_mask) / n_all
    elif params.policy_loss == "sft":
        per_token = sft_loss(logprobs)
    else:  # AlgorithmParams validated the name
        raise ValueError(f"unknown policy loss {params.policy_loss!r}")
    if token_weights is not None:
        per_token = per_token * token_weights.detach()
    total = aggregate(per_token, response_mask, mode, normalizers)
    parts["pg_loss"] = total.detach()

    def reduce(values: Tensor) -> Tensor:
        return aggregate(values, response_mask, mode, normalizers)

    extra, extra_parts = kl_and_entropy_terms(
        logprobs,
        old_logprobs=old_logprobs,
        ref_logprobs=ref_logprobs,
        entropy=entropy,
        kl_coef=float(params.kl_coef or 0.0),
        kl_estimator=params.kl_estimator,
        kl_target=params.kl_target,
        entropy_coef=params.entropy_coef,
        reduce_kl=reduce,
        reduce_entropy=reduce,
    )
    total = total + extra
    parts.update(extra_parts)
    parts["loss"] = total.detach()
    return total * float(normalizers.dp_world_size), parts
