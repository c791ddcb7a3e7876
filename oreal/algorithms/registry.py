"""The one registry of algorithms, chosen by name, and their parameters as a plain dataclass.

An :class:`AlgorithmSpec` ties together what a method needs: its advantage estimator, the reward
scale it expects, its per-token policy loss, its loss aggregation and any default it changes
(OREAL's two forms). :class:`AlgorithmParams` is the flat set of knobs the trainer passes to
:func:`compute_advantages` and :func:`oreal.algorithms.loss.compute_policy_loss`; fields left
``None`` are filled from the spec, so ``AlgorithmParams(name="raft")`` is RAFT as published.

Unknown names (algorithm, aggregation, estimator, ...) raise ``ValueError`` naming the closest
valid choice, so a typo in a config fails loudly with the fix in the message.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from oreal.algorithms import advantages as adv
from oreal.algorithms.advantages import REWARD_SCALES, AdvantageResult, check_reward_scale
from oreal.algorithms.aggregation import AGGREGATIONS
from oreal.algorithms.oreal_loss import KL_NORMALIZERS, NEG_SURROGATES, NEG_WEIGHTS, OREAL_FORMS
from oreal.algorithms.policy_losses import KL_ESTIMATORS, KL_TARGETS

POLICY_LOSSES: tuple[str, ...] = ("pg", "ppo_clip", "sft", "oreal")
_OREAL_ONLY = (
    "positive_factor",
    "negative_factor",
    "pos_mult_adv",
    "neg_weight",
    "neg_surrogate",
    "kl_normalizer",
)


def choose(name: str, options: Iterable[str], what: str) -> str:
    """Return ``name`` if valid, else raise ``ValueError`` with the closest option (difflib)."""
    options = list(options)
    if name in options:
        return name
    lowered = {option.lower(): option for option in options}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.0)
    hint = f" Did you mean {lowered[close[0]]!r}?" if close else ""
    raise ValueError(f"unknown {what} {name!r}.{hint} Valid: {', '.join(options)}")


@dataclass(frozen=True)
class AlgorithmSpec:
    """One registered method.

    - ``estimator``: ``fn(rewards, group_ids, **params) -> AdvantageResult``; its keyword
      parameters are filled from :class:`AlgorithmParams` fields of the same name.
    - ``reward_scale``: ``"01"`` or ``"pm1"``, what the paper/release scores rewards as.
    - ``binary``: the estimator reads correctness from the reward, so rewards must be exactly
      on the scale (checked); baseline methods also accept continuous rewards.
    - ``forms``: named presets (OREAL ``release``/``paper``); the first is the default.
    """

    name: str
    estimator: Callable[..., AdvantageResult]
    reward_scale: str
    policy_loss: str
    aggregation: str
    paper: str
    binary: bool = False
    forms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_REGISTRY: dict[str, AlgorithmSpec] = {}


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add (or replace) a method; plug-ins call this at import time."""
    choose(spec.reward_scale, REWARD_SCALES, "reward scale")
    choose(spec.policy_loss, POLICY_LOSSES, "policy loss")
    choose(spec.aggregation, AGGREGATIONS, "aggregation")
    _REGISTRY[spec.name] = spec
    return spec


def available_algorithms() -> list[str]:
    return list(_REGISTRY)


def get_algorithm(name: str) -> AlgorithmSpec:
    return _REGISTRY[choose(name, _REGISTRY, "algorithm")]


def get_advantage_estimator(name: str) -> Callable[..., AdvantageResult]:
    """The advantage function of a registered method (raises with the closest name)."""
    return get_algorithm(name).estimator


for _spec in (
    AlgorithmSpec("grpo", adv.grpo, "01", "ppo_clip", "seq_mean_token_mean",
                  "Shao et al., DeepSeekMath, arXiv 2402.03300, §4.1.2, Eq. 3"),
    AlgorithmSpec("dr_grpo", adv.dr_grpo, "01", "ppo_clip", "dr_grpo",
                  "Liu et al., Understanding R1-Zero-Like Training, arXiv 2503.20783"),
    AlgorithmSpec("rloo", adv.rloo, "01", "pg", "token_mean",
                  "Ahmadian et al., Back to Basics, arXiv 2402.14740"),
    AlgorithmSpec("reinforce", adv.reinforce, "pm1", "pg", "token_mean",
                  "Williams 1992; OREAL arXiv 2502.06781, Table 2 baseline"),
    AlgorithmSpec("reinforce_rej", adv.reinforce_rej, "pm1", "ppo_clip", "token_mean",
                  "Xiong et al., A Minimalist Approach, arXiv 2504.11343", binary=True),
    AlgorithmSpec("raft", adv.raft, "01", "sft", "token_mean",
                  "Dong et al. arXiv 2304.06767; Xiong et al. arXiv 2504.11343", binary=True),
    AlgorithmSpec("psr", adv.psr, "01", "ppo_clip", "token_mean",
                  "Zhu et al., arXiv 2506.01347 (PSR)", binary=True),
    AlgorithmSpec("nsr", adv.nsr, "01", "ppo_clip", "token_mean",
                  "Zhu et al., arXiv 2506.01347 (NSR)", binary=True),
    AlgorithmSpec("w_reinforce", adv.w_reinforce, "01", "ppo_clip", "token_mean",
                  "Zhu et al., arXiv 2506.01347 (W-REINFORCE)", binary=True),
    AlgorithmSpec("oreal", adv.oreal, "pm1", "oreal", "token_mean",
                  "Lyu et al., OREAL, arXiv 2502.06781, §2.2-2.4, Eq. 10-11, Algorithm 1",
                  binary=True, forms=OREAL_FORMS),
):  # fmt: skip
    register_algorithm(_spec)


@dataclass(frozen=True)
class AlgorithmParams:
    """Every knob of advantage + loss; ``None`` fields take the algorithm's default.

    Default (paper value in brackets):

    - ``name = "oreal"``; ``oreal_form = "release"`` (or ``"paper"``; ignored by methods
      without named forms, so a flat config may always carry it).
    - ``reward_scale``: from the spec (OREAL release ±1, paper {0,1}; see docs/algorithms.md).
    - ``policy_loss``: ``pg`` | ``ppo_clip`` | ``sft`` | ``oreal``, from the spec.
    - ``aggregation``: ``token_mean`` | ``seq_mean_token_mean`` | ``seq_mean_token_sum`` |
      ``dr_grpo``, from the spec (ignored by ``oreal``, which splits N+/N-/N).
    - ``clip_eps_low = 0.2`` [PPO/GRPO 0.2], ``clip_eps_high = 0.28`` [DAPO 0.28; 0.2 in PPO,
      GRPO, RAFT++, NSR], ``dual_clip = None`` [RAFT++ 3.0].
    - ``kl_coef``: 0.0, OREAL 0.01 [GRPO 0.04, 1-shot RLVR 0.001, RAFT 0.001, OREAL 0.01];
      ``kl_estimator = "k3"``; ``kl_target = "ref"`` (OREAL paper form: ``"old"``).
    - ``entropy_coef = 0.0`` [1-shot RLVR 0.001, RAFT/PRIME yaml 0.001].
    - ``grpo_eps = 1e-6`` [verl 1e-6; OREAL's grpo option 1e-8].
    - ``w_reinforce_lambda = 0.1`` [0.1].
    - ``filter_groups = True`` (OREAL 1+1 selection; False = the release without token RM).
    - OREAL: ``positive_factor`` λ+ = 1.0, ``negative_factor`` η = 0.5 [paper: unstated],
      ``pos_mult_adv``, ``neg_weight``, ``neg_surrogate``, ``kl_normalizer`` from the form.
    """

    name: str = "oreal"
    oreal_form: str | None = None
    reward_scale: str | None = None
    policy_loss: str | None = None
    aggregation: str | None = None
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.28
    dual_clip: float | None = None
    kl_coef: float | None = None
    kl_estimator: str | None = None
    kl_target: str | None = None
    entropy_coef: float = 0.0
    grpo_eps: float = 1e-6
    w_reinforce_lambda: float = 0.1
    filter_groups: bool = True
    positive_factor: float | None = None
    negative_factor: float | None = None
    pos_mult_adv: bool | None = None
    neg_weight: str | None = None
    neg_surrogate: str | None = None
    kl_normalizer: str | None = None

    def __post_init__(self) -> None:
        spec = get_algorithm(self.name)
        fill: dict[str, Any] = {
            "reward_scale": spec.reward_scale,
            "policy_loss": spec.policy_loss,
            "aggregation": spec.aggregation,
            "kl_coef": 0.0,
            "kl_estimator": "k3",
            "kl_target": "ref",
            # OREAL-only switches: the release values, unused by other policy losses.
            **{k: v for k, v in OREAL_FORMS["release"].items() if k in _OREAL_ONLY},
        }
        if spec.forms:
            form = choose(self.oreal_form or next(iter(spec.forms)), spec.forms, "OREAL form")
            fill.update(spec.forms[form])
            object.__setattr__(self, "oreal_form", form)
        for key, value in fill.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        choose(self.reward_scale, REWARD_SCALES, "reward scale")
        choose(self.policy_loss, POLICY_LOSSES, "policy loss")
        choose(self.aggregation, AGGREGATIONS, "aggregation")
        choose(self.kl_estimator, KL_ESTIMATORS, "KL estimator")
        choose(self.kl_target, KL_TARGETS, "KL target")
        choose(self.neg_weight, NEG_WEIGHTS, "OREAL neg_weight")
        choose(self.neg_surrogate, NEG_SURROGATES, "OREAL neg_surrogate")
        choose(self.kl_normalizer, KL_NORMALIZERS, "OREAL kl_normalizer")

    @property
    def spec(self) -> AlgorithmSpec:
        return get_algorithm(self.name)


def algorithm_params(name: str, form: str | None = None, **overrides: Any) -> AlgorithmParams:
    """``AlgorithmParams`` for ``name`` (and OREAL ``form``) with keyword overrides checked."""
    names = [f.name for f in fields(AlgorithmParams)]
    for key in overrides:
        choose(key, names, "algorithm parameter")
    return AlgorithmParams(name=name, oreal_form=form, **overrides)


def compute_advantages(
    params: AlgorithmParams,
    rewards: Tensor,
    group_ids: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> AdvantageResult:
    """Run the method's estimator with the parameters it declares (and ``generator``).

    ``rewards`` must already be on ``params.reward_scale`` (use
    :func:`oreal.algorithms.advantages.rewards_from_correct`); methods that read correctness
    from the reward check this exactly.
    """
    spec = params.spec
    if spec.binary:
        check_reward_scale(rewards, params.reward_scale)
    accepted = inspect.signature(spec.estimator).parameters
    kwargs: dict[str, Any] = {k: getattr(params, k) for k in accepted if hasattr(params, k)}
    if "generator" in accepted:
        kwargs["generator"] = generator
    return spec.estimator(rewards, group_ids, **kwargs)
