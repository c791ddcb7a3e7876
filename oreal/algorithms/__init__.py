"""Algorithms: pure tensor functions for outcome-reward RL (no text, no models).

- :mod:`~oreal.algorithms.registry`: registries of estimators, policy losses, aggregations and
  algorithms, each filled by a decorator; plug-in import.
- :mod:`~oreal.algorithms.advantages`: advantage estimators (GRPO, Dr.GRPO, RLOO, REINFORCE,
  Reinforce-Rej, RAFT, PSR, NSR, W-REINFORCE, OREAL), the reward-scale conversion and
  :func:`compute_advantages`.
- :mod:`~oreal.algorithms.policy_losses`: per-token PG, PPO clip (clip-higher, dual clip), SFT,
  KL estimators k1/k2/k3, entropy.
- :mod:`~oreal.algorithms.aggregation`: token/sequence reductions over *global* counts.
- :mod:`~oreal.algorithms.loss`: :func:`compute_policy_loss`, the trainer's per-micro-batch call.
- :mod:`~oreal.algorithms.oreal_loss`: the OREAL loss, ``release`` and ``paper`` forms.
- :mod:`~oreal.algorithms.params` and :mod:`~oreal.algorithms.methods`: each method's
  parameters as a pydantic model, defaults from its paper and its authors' code.

Formulas, defaults, papers and the evidence for each default: ``docs/algorithms.md``.
"""

from oreal.algorithms.advantages import (
    REWARD_SCALES,
    AdvantageResult,
    check_reward_scale,
    compute_advantages,
    rewards_from_correct,
)
from oreal.algorithms.aggregation import LossNormalizers, aggregate
from oreal.algorithms.loss import LossInputs, compute_policy_loss, rows_without_gradient
from oreal.algorithms.methods import (
    GRPO,
    NSR,
    OREAL,
    PSR,
    RAFT,
    RLOO,
    DrGRPO,
    RAFTPlusPlus,
    Reinforce,
    ReinforceRej,
    WReinforce,
)
from oreal.algorithms.oreal_loss import OREAL_FORMS, OREALParams, oreal_loss
from oreal.algorithms.params import AlgorithmParams, PPOClipParams, TokenLossParams
from oreal.algorithms.policy_losses import (
    KL_ESTIMATORS,
    entropy_from_logits,
    kl_penalty,
    pg_loss,
    ppo_clip_loss,
    sft_loss,
)
from oreal.algorithms.registry import (
    AGGREGATIONS,
    ALGORITHMS,
    ESTIMATORS,
    POLICY_LOSSES,
    algorithm_class,
    algorithm_params,
    available_algorithms,
    get_aggregation,
    get_estimator,
    get_policy_loss,
    import_plugins,
    register_aggregation,
    register_algorithm,
    register_estimator,
    register_policy_loss,
)

__all__ = [
    "AGGREGATIONS",
    "ALGORITHMS",
    "ESTIMATORS",
    "GRPO",
    "KL_ESTIMATORS",
    "NSR",
    "OREAL",
    "OREAL_FORMS",
    "POLICY_LOSSES",
    "PSR",
    "RAFT",
    "REWARD_SCALES",
    "RLOO",
    "AdvantageResult",
    "AlgorithmParams",
    "DrGRPO",
    "LossInputs",
    "LossNormalizers",
    "OREALParams",
    "PPOClipParams",
    "RAFTPlusPlus",
    "Reinforce",
    "ReinforceRej",
    "TokenLossParams",
    "WReinforce",
    "aggregate",
    "algorithm_class",
    "algorithm_params",
    "available_algorithms",
    "check_reward_scale",
    "compute_advantages",
    "compute_policy_loss",
    "entropy_from_logits",
    "get_aggregation",
    "get_estimator",
    "get_policy_loss",
    "import_plugins",
    "kl_penalty",
    "oreal_loss",
    "pg_loss",
    "ppo_clip_loss",
    "register_aggregation",
    "register_algorithm",
    "register_estimator",
    "register_policy_loss",
    "rewards_from_correct",
    "rows_without_gradient",
    "sft_loss",
]
