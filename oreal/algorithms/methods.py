"""The registered methods: each a parameter model whose defaults are its paper and its code.

Where the paper and the authors' code differ, the default follows the code that produced the
published numbers, and the docstring names the other reading. Evidence (file:line at a commit)
is in docs/algorithms.md. Every method here learns in the single-update regime unless the
trainer is asked for several epochs or mini-batches (``algorithm.update_epochs`` /
``algorithm.minibatches``), which is when clipping can act.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from oreal.algorithms.oreal_loss import OREALParams
from oreal.algorithms.params import PPOClipParams, RejectedRows, TokenLossParams
from oreal.algorithms.registry import register_algorithm

__all__ = [
    "GRPO",
    "NSR",
    "OREAL",
    "PSR",
    "RAFT",
    "RLOO",
    "DrGRPO",
    "RAFTPlusPlus",
    "Reinforce",
    "ReinforceRej",
    "WReinforce",
]


@register_algorithm("grpo", paper="Shao et al., DeepSeekMath, arXiv 2402.03300, §4.1.2, Eq. 3")
class GRPO(PPOClipParams):
    """A_i = (r_i - mean_g r)/(std_g r + eps) (unbiased std), PPO clip 0.2/0.2, sequence mean
    of token means. β = 0 as in TRL and verl (the paper used 0.04: set ``kl_coef``); no dual
    clip (TRL; verl's vanilla loss has c = 3, inert with one update per batch)."""

    estimator: ClassVar[str] = "grpo"
    policy_loss: ClassVar[str] = "ppo_clip"
    aggregation: str = "seq_mean_token_mean"
    eps: float = Field(1e-6, gt=0.0, description="Added to the group std (verl 1e-6).")


@register_algorithm(
    "dr_grpo", paper="Liu et al., Understanding R1-Zero-Like Training, arXiv 2503.20783"
)
class DrGRPO(PPOClipParams):
    """A_i = r_i - mean_g r (no std), the constant normaliser B·L_max (``aggregation=dr_grpo``)."""

    estimator: ClassVar[str] = "dr_grpo"
    policy_loss: ClassVar[str] = "ppo_clip"
    aggregation: str = "dr_grpo"


@register_algorithm("rloo", paper="Ahmadian et al., Back to Basics, arXiv 2402.14740")
class RLOO(TokenLossParams):
    """A_i = r_i - mean_{j≠i} r_j, REINFORCE loss, token mean."""

    estimator: ClassVar[str] = "rloo"
    policy_loss: ClassVar[str] = "pg"


@register_algorithm("reinforce", paper="Williams 1992; OREAL arXiv 2502.06781, Table 2 baseline")
class Reinforce(TokenLossParams):
    """A_i = r_i (no baseline) on ±1 rewards, so wrong answers are pushed down."""

    estimator: ClassVar[str] = "reinforce"
    policy_loss: ClassVar[str] = "pg"
    reward_scale: Literal["01", "pm1"] = "pm1"


class _MinimalRL(PPOClipParams):
    """What RLHFlow/Minimal-RL's scripts run (@e3b49f0, ``scripts/run_*.sh``, ppo_trainer.yaml):
    k3 KL 0.001 in the loss, entropy bonus 0.001, rejected rows kept with A = 0."""

    binary: ClassVar[bool] = True
    kl_coef: float = Field(0.001, ge=0.0)
    entropy_coef: float = Field(0.001, ge=0.0)
    rejected_rows: RejectedRows = "count"


@register_algorithm("reinforce_rej", paper="Xiong et al., A Minimalist Approach, arXiv 2504.11343")
class ReinforceRej(_MinimalRL):
    """A_i = r_i in groups whose rewards are not all equal (0 elsewhere), PPO clip with dual
    clip c = 3, {0,1} rewards as released (``reward_scale="pm1"`` for the paper's reading)."""

    estimator: ClassVar[str] = "reinforce_rej"
    policy_loss: ClassVar[str] = "ppo_clip"
    dual_clip: float | None = Field(3.0, gt=1.0)


@register_algorithm("raft", paper="Dong et al. arXiv 2304.06767; Xiong et al. arXiv 2504.11343")
class RAFT(TokenLossParams):
    """A_i = max(r_i, 0) with the loss -A·log π: SFT on the correct samples, wrong ones kept
    with A = 0 (Minimal-RL ``policy_loss=vanilla``); KL 0.001, entropy 0.001."""

    estimator: ClassVar[str] = "raft"
    policy_loss: ClassVar[str] = "sft"
    binary: ClassVar[bool] = True
    kl_coef: float = Field(0.001, ge=0.0)
    entropy_coef: float = Field(0.001, ge=0.0)
    rejected_rows: RejectedRows = "count"


@register_algorithm(
    "raft_pp", paper="Xiong et al., A Minimalist Approach (RAFT++), arXiv 2504.11343"
)
class RAFTPlusPlus(_MinimalRL):
    """RAFT's advantage with PPO clip 0.2 and dual clip c = 3 (Minimal-RL ``plusplus``)."""

    estimator: ClassVar[str] = "raft"
    policy_loss: ClassVar[str] = "ppo_clip"
    dual_clip: float | None = Field(3.0, gt=1.0)


class _RLVRDecomposed(PPOClipParams):
    """What TianHongZXY/RLVR-Decomposed runs (@a5d4e7c): PPO clip 0.2, no dual clip, no KL,
    entropy bonus 0.001 (its ppo_trainer.yaml), {0,1} rewards."""

    binary: ClassVar[bool] = True
    entropy_coef: float = Field(0.001, ge=0.0)


@register_algorithm("psr", paper="Zhu et al., arXiv 2506.01347 (PSR)")
class PSR(_RLVRDecomposed):
    """A = 1 on correct samples; only they are trained on (``rejected_rows="drop"``)."""

    estimator: ClassVar[str] = "psr"
    policy_loss: ClassVar[str] = "ppo_clip"
    rejected_rows: RejectedRows = "drop"


@register_algorithm("nsr", paper="Zhu et al., arXiv 2506.01347 (NSR)")
class NSR(_RLVRDecomposed):
    """A = -1 on wrong samples; only they are trained on (``rejected_rows="drop"``)."""

    estimator: ClassVar[str] = "nsr"
    policy_loss: ClassVar[str] = "ppo_clip"
    rejected_rows: RejectedRows = "drop"


@register_algorithm("w_reinforce", paper="Zhu et al., arXiv 2506.01347 (W-REINFORCE)")
class WReinforce(_RLVRDecomposed):
    """A = λ on correct, -1 on wrong samples, every row kept; λ = 0.1 (the authors' README)."""

    estimator: ClassVar[str] = "w_reinforce"
    policy_loss: ClassVar[str] = "ppo_clip"
    lam: float = Field(0.1, ge=0.0, description="λ, the weight of correct samples.")


@register_algorithm(
    "oreal", paper="Lyu et al., OREAL, arXiv 2502.06781, §2.2-2.4, Eq. 10-11, Algorithm 1"
)
class OREAL(OREALParams):
    """RLOO over all K rollouts, one correct + one wrong kept per mixed group, the split loss
    of ``oreal_loss.py`` (forms ``release``, the default, and ``paper``)."""

    estimator: ClassVar[str] = "oreal"
    policy_loss: ClassVar[str] = "oreal"
    binary: ClassVar[bool] = True
