"""Algorithms: pure tensor functions for outcome-reward RL (no text, no models).

- :mod:`~oreal.algorithms.advantages`: advantage estimators (GRPO, Dr.GRPO, RLOO, REINFORCE,
  Reinforce-Rej, RAFT, PSR, NSR, W-REINFORCE, OREAL) and the reward-scale conversion.
- :mod:`~oreal.algorithms.policy_losses`: per-token PG, PPO clip (clip-higher, dual clip), SFT,
  KL estimators k1/k2/k3, entropy.
- :mod:`~oreal.algorithms.aggregation`: token/sequence reductions over *global* counts.
- :mod:`~oreal.algorithms.oreal_loss`: the OREAL loss, ``release`` and ``paper`` forms.
- :mod:`~oreal.algorithms.registry`: the one registry, chosen by name, and ``AlgorithmParams``.
- :mod:`~oreal.algorithms.loss`: ``compute_policy_loss``, the trainer's per-micro-batch call.

Formulas, defaults and papers: ``docs/algorithms.md``.
"""

from oreal.algorithms.advantages import (
    REWARD_SCALES,
    AdvantageResult,
    check_reward_scale,
    rewards_from_correct,
)
from oreal.algorithms.aggregation import AGGREGATIONS, LossNormalizers, aggregate
from oreal.algorithms.loss import compute_policy_loss
from oreal.algorithms.oreal_loss import OREAL_FORMS, oreal_loss
from oreal.algorithms.policy_losses import (
    KL_ESTIMATORS,
    entropy_from_logits,
    kl_penalty,
    pg_loss,
    ppo_clip_loss,
    sft_loss,
)
from oreal.algorithms.registry import (
    POLICY_LOSSES,
    AlgorithmParams,
    AlgorithmSpec,
    algorithm_params,
    available_algorithms,
    compute_advantages,
    get_advantage_estimator,
    get_algorithm,
    register_algorithm,
)

__all__ = [
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "OREAL_FORMS",
    "POLICY_LOSSES",
    "REWARD_SCALES",
    "AdvantageResult",
    "AlgorithmParams",
    "AlgorithmSpec",
    "LossNormalizers",
    "aggregate",
    "algorithm_params",
    "available_algorithms",
    "check_reward_scale",
    "compute_advantages",
    "compute_policy_loss",
    "entropy_from_logits",
    "get_advantage_estimator",
    "get_algorithm",
    "kl_penalty",
    "oreal_loss",
    "pg_loss",
    "ppo_clip_loss",
    "register_algorithm",
    "rewards_from_correct",
    "sft_loss",
]
