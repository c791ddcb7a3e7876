"""The OREAL policy loss (Lyu et al., arXiv 2502.06781): release and paper forms, one function.

Notation: A the sequence advantage from :func:`oreal.algorithms.advantages.oreal`, p the group
pass rate c/K, w_t the per-token weight (``token_weights``: w+ on correct rows, w- on wrong
rows, from the token-level reward model; ones without one), ℓ_t = -log π_θ(y_t|·),
ρ_t = exp(log π_θ - sg[log π_old]), and N+, N-, N the step's global token counts of correct,
wrong and all kept sequences (:class:`~oreal.algorithms.aggregation.LossNormalizers`).

    L_pos = (λ+ / N+) · Σ_{correct i} a+_i · Σ_t w_{i,t} · ℓ_{i,t}
    L_neg = (η  / N-) · Σ_{wrong i}   b-_i · Σ_t w_{i,t} · s_{i,t}
    L_KL  = (β  / D ) · Σ_{all kept i} Σ_t k3(log π_target, log π_θ)_{i,t}
    L     = L_pos + L_neg + L_KL - (α / N) · Σ_t H_t        (α = 0 in both forms)

with the switches

=================  ==========================  ==============================================
switch             ``release`` (default)       ``paper``
=================  ==========================  ==============================================
reward_scale       ±1 (``pm1``)                {0,1} (``01``)
a+ (pos_mult_adv)  A+ (True)                   1 (False: pure BC, Eq. 11 / L1)
b- (neg_weight)    |A-| (``abs_adv``)          1 - p (``one_minus_p``, L2's F(1 - p))
s (neg_surrogate)  ρ (``ratio``)               log ρ (``log_ratio``, Eq. 11 as printed)
KL target          frozen π_ref (``ref``)      π_old (``old``, as printed)
KL estimator / β   k3 / 0.01                   k3 / 0.01
D (kl_normalizer)  N (``all``)                 N (``all``; the paper does not say)
λ+ / η             1.0 / 0.5                   1.0 / 0.5 (η not stated in the paper)
=================  ==========================  ==============================================

Release form: InternLM/OREAL ``train_oreal.py`` at 2859cc0 (``pos_mult_adv=True``,
``positive_loss_factor=1.0``, ``negative_loss_factor=0.5``, ``kl_coef=0.01``,
``kl_type="unbias"``). One optimizer step per rollout batch, so ρ ≡ 1 in value and
∇L_neg = (η/N-)·Σ |A-|·w·∇log π_θ: plain REINFORCE with an RLOO baseline on the negative.
The pre-2859cc0 KL normaliser N- is available as ``kl_normalizer="neg"``.

Paper form, the reading implemented: Eq. 11 gives the token-weighted BC term on D+ and the
η-weighted log-ratio term on D- plus β·KL(π_θ ‖ π_old); Eq. 11 as printed drops L2's
F(1 - p) factor, which we restore (b- = 1 - p with p = c/K over all K rollouts, the Monte Carlo
estimate; the leave-one-out estimate c/(K-1) would differ by K/(K-1) on wrong samples).
The paper leaves η and the normalisers unstated: we use the release's η = 0.5 and N+, N-, N.
Note that on-policy (one update per batch, π_old = sg[π_θ]) KL(π_θ ‖ π_old) is 0 in value
and gradient, so the printed KL is inert; set ``kl_target="ref"`` for an anchor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from oreal.algorithms.aggregation import LossNormalizers, denominator, masked_sum, zero_padding
from oreal.algorithms.params import AlgorithmParams
from oreal.algorithms.policy_losses import (
    KLEstimator,
    KLTarget,
    kl_and_entropy_terms,
    log_ratio,
)
from oreal.algorithms.registry import register_policy_loss

if TYPE_CHECKING:
    from oreal.algorithms.loss import LossInputs

NegWeight = Literal["abs_adv", "one_minus_p", "none"]
NegSurrogate = Literal["ratio", "log_ratio"]
KLNormalizer = Literal["all", "neg"]
NEG_WEIGHTS: tuple[str, ...] = ("abs_adv", "one_minus_p", "none")
NEG_SURROGATES: tuple[str, ...] = ("ratio", "log_ratio")
KL_NORMALIZERS: tuple[str, ...] = ("all", "neg")

#: The two named forms: every switch above, and the reward scale the advantage stage uses.
OREAL_FORMS: dict[str, dict[str, Any]] = {
    "release": {
        "reward_scale": "pm1",
        "positive_factor": 1.0,
        "negative_factor": 0.5,
        "pos_mult_adv": True,
        "neg_weight": "abs_adv",
        "neg_surrogate": "ratio",
        "kl_coef": 0.01,
        "kl_estimator": "k3",
        "kl_target": "ref",
        "kl_normalizer": "all",
    },
    "paper": {
        "reward_scale": "01",
        "positive_factor": 1.0,
        "negative_factor": 0.5,
        "pos_mult_adv": False,
        "neg_weight": "one_minus_p",
        "neg_surrogate": "log_ratio",
        "kl_coef": 0.01,
        "kl_estimator": "k3",
        "kl_target": "old",
        "kl_normalizer": "all",
    },
}


def _per_seq(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.dtype).unsqueeze(-1)


def oreal_loss(
    logprobs: Tensor,
    response_mask: Tensor,
    advantages: Tensor,
    positive: Tensor,
    normalizers: LossNormalizers,
    *,
    old_logprobs: Tensor | None = None,
    ref_logprobs: Tensor | None = None,
    token_weights: Tensor | None = None,
    pass_rate: Tensor | None = None,
    entropy: Tensor | None = None,
    positive_factor: float = 1.0,
    negative_factor: float = 0.5,
    pos_mult_adv: bool = True,
    neg_weight: NegWeight = "abs_adv",
    neg_surrogate: NegSurrogate = "ratio",
    kl_coef: float = 0.01,
    kl_estimator: KLEstimator = "k3",
    kl_target: KLTarget = "ref",
    kl_normalizer: KLNormalizer = "all",
    entropy_coef: float = 0.0,
    dp_world_size: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One micro-batch's share of the OREAL loss (module docstring: formulas and switches).

    Shapes: ``logprobs``, ``response_mask``, ``old/ref_logprobs``, ``token_weights``,
    ``entropy``: ``[b, T]``; ``advantages``, ``positive``, ``pass_rate``: ``[b]``. Defaults are
    the ``release`` form. Returns ``(loss, parts)``; the loss carries the data-parallel factor
    (``dp_world_size``, default ``normalizers.dp_world_size``), the detached parts
    (``pos_loss``, ``neg_loss``, ``kl``, ``kl_loss``, ``entropy``) do not, so summing parts over
    micro-batches *and* ranks gives the step's values.
    """
    mask = response_mask.bool()
    logprobs, old_logprobs, ref_logprobs, entropy, token_weights = zero_padding(
        mask, logprobs, old_logprobs, ref_logprobs, entropy, token_weights
    )
    assert logprobs is not None
    pos_rows = positive.bool().unsqueeze(-1)
    weights = torch.ones_like(logprobs) if token_weights is None else token_weights.detach()
    adv = advantages.detach().to(logprobs.dtype)

    a_pos = adv if pos_mult_adv else torch.ones_like(adv)
    if neg_weight == "abs_adv":
        b_neg = adv.abs()
    elif neg_weight == "one_minus_p":
        if pass_rate is None:
            raise ValueError("neg_weight='one_minus_p' needs pass_rate")
        b_neg = 1.0 - pass_rate.detach().to(logprobs.dtype)
    elif neg_weight == "none":
        b_neg = torch.ones_like(adv)
    else:
        raise ValueError(f"unknown neg_weight {neg_weight!r}; expected one of {NEG_WEIGHTS}")

    lr = log_ratio(logprobs, old_logprobs)
    if neg_surrogate == "ratio":
        surrogate = torch.exp(lr)
    elif neg_surrogate == "log_ratio":
        surrogate = lr
    else:
        raise ValueError(f"unknown neg_surrogate {neg_surrogate!r}; expected {NEG_SURROGATES}")

    n_pos = denominator(normalizers.num_pos_tokens)
    n_neg = denominator(normalizers.num_neg_tokens)
    n_all = denominator(normalizers.num_tokens)
    pos_loss = masked_sum(_per_seq(a_pos, logprobs) * weights * -logprobs, mask & pos_rows)
    pos_loss = pos_loss * (positive_factor / n_pos)
    neg_loss = masked_sum(_per_seq(b_neg, logprobs) * weights * surrogate, mask & ~pos_rows)
    neg_loss = neg_loss * (negative_factor / n_neg)
    total = pos_loss + neg_loss
    parts: dict[str, Tensor] = {"pos_loss": pos_loss.detach(), "neg_loss": neg_loss.detach()}

    if kl_normalizer not in KL_NORMALIZERS:
        raise ValueError(f"unknown kl_normalizer {kl_normalizer!r}; expected {KL_NORMALIZERS}")
    kl_denom = n_all if kl_normalizer == "all" else n_neg
    extra, extra_parts = kl_and_entropy_terms(
        logprobs,
        old_logprobs=old_logprobs,
        ref_logprobs=ref_logprobs,
        entropy=entropy,
        kl_coef=kl_coef,
        kl_estimator=kl_estimator,
        kl_target=kl_target,
        entropy_coef=entropy_coef,
        reduce_kl=lambda k: masked_sum(k, mask) / kl_denom,
        reduce_entropy=lambda h: masked_sum(h, mask) / n_all,
    )
    total = total + extra
    parts.update(extra_parts)

    parts["pg_loss"] = (pos_loss + neg_loss).detach()
    parts["loss"] = total.detach()
    factor = normalizers.dp_world_size if dp_world_size is None else dp_world_size
    return total * float(factor), parts


class OREALParams(AlgorithmParams):
    """OREAL's parameters; ``form`` picks the defaults of every switch in the table above.

    A field given explicitly wins over its form's value (``form: paper`` with ``kl_target: ref``
    is the paper form anchored to the frozen reference). ``filter_groups=False`` trains on every
    rollout (the release's variant without the token RM).
    """

    form: Literal["release", "paper"] = "release"
    reward_scale: Literal["01", "pm1"] = "pm1"
    filter_groups: bool = True
    positive_factor: float = Field(1.0, ge=0.0, description="λ+")
    negative_factor: float = Field(0.5, ge=0.0, description="η")
    pos_mult_adv: bool = True
    neg_weight: NegWeight = "abs_adv"
    neg_surrogate: NegSurrogate = "ratio"
    kl_coef: float = Field(0.01, ge=0.0)
    kl_normalizer: KLNormalizer = "all"

    @model_validator(mode="before")
    @classmethod
    def _form_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        form = data.get("form", "release")
        if form not in OREAL_FORMS:
            return data  # the field's own validation names the valid forms
        return {**OREAL_FORMS[form], **data}


@register_policy_loss("oreal", params=OREALParams)
def oreal_objective(batch: LossInputs, params: OREALParams) -> tuple[Tensor, dict[str, Tensor]]:
    """The OREAL loss of one micro-batch (module docstring), without the DP factor."""
    if batch.positive is None:
        raise ValueError("the OREAL loss needs `positive` (AdvantageResult.positive)")
    loss, parts = oreal_loss(
        batch.logprobs,
        batch.response_mask,
        batch.advantages,
        batch.positive,
        batch.normalizers,
        old_logprobs=batch.old_logprobs,
        ref_logprobs=batch.ref_logprobs,
        token_weights=batch.token_weights,
        pass_rate=batch.pass_rate,
        entropy=batch.entropy,
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
        dp_world_size=1,
    )
    return loss, parts
