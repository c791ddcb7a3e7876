"""Parameter models shared by the algorithms: what every method has, and what each loss reads.

Each registered algorithm (:mod:`oreal.algorithms.methods`) is a pydantic model derived from
one of these, with its paper's defaults. Models are frozen and forbid unknown fields, so a
config typo fails at validation with the closest valid key.

    AlgorithmParams          reward_scale, kl_coef, kl_estimator, kl_target, entropy_coef
      TokenLossParams        + aggregation                      (policy losses pg, sft)
        PPOClipParams        + clip_eps_low, clip_eps_high, dual_clip      (ppo_clip)
      OREALParams            (oreal_loss.py: the split N+/N-/N normalisation, two forms)
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oreal.algorithms.policy_losses import KLEstimator, KLTarget
from oreal.algorithms.registry import AGGREGATIONS
from oreal.names import choose

__all__ = ["AlgorithmParams", "PPOClipParams", "RejectedRows", "TokenLossParams"]

RewardScale = Literal["01", "pm1"]
RejectedRows = Literal["count", "drop"]


class AlgorithmParams(BaseModel):
    """What every algorithm has.

    - ``reward_scale``: how a reward in [0, 1] (1 = correct) becomes the number the method
      learns from: ``"01"`` keeps it, ``"pm1"`` maps r -> 2r - 1 (a verdict: {0,1} -> {-1,+1}).
      It doubles every baseline advantage and decides whether raw-reward methods see wrong
      answers at all (Reinforce-Rej on {0,1} gives them zero weight).
    - ``kl_coef`` β, ``kl_estimator`` (k1, k2, k3), ``kl_target`` (``"ref"``: the frozen initial
      policy; ``"old"``: the rollout policy): L += β·agg(KL_t). The KL is also *logged* when
      β = 0 and its target is at hand; with β = 0 and target ``ref`` no reference is built.
    - ``entropy_coef`` α: L -= α·agg(H_t) (1-shot RLVR, arXiv 2504.20571: 0.001).

    Class variables set by each registered method: ``name``, ``paper``, ``estimator``,
    ``policy_loss`` and ``binary`` (learns from correct/incorrect only, not from reward values).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: ClassVar[str]
    paper: ClassVar[str]
    estimator: ClassVar[str]
    policy_loss: ClassVar[str]
    binary: ClassVar[bool] = False

    reward_scale: RewardScale = Field("01", description="'01' keeps r; 'pm1' maps r to 2r - 1.")
    kl_coef: float = Field(0.0, ge=0.0, description="β of the KL term in the loss.")
    kl_estimator: KLEstimator = Field("k3", description="k1, k2 or k3 (Schulman 2020).")
    kl_target: KLTarget = Field("ref", description="'ref': frozen initial policy; 'old'.")
    entropy_coef: float = Field(0.0, ge=0.0, description="α of the entropy bonus.")

    @property
    def needs_reference(self) -> bool:
        """The step needs the frozen reference's log-probs (β > 0 against ``ref``)."""
        return self.kl_coef > 0 and self.kl_target == "ref"

    def describe(self) -> dict[str, Any]:
        """Name, paper and every parameter: what a run records about its method."""
        return {"name": self.name, "paper": self.paper, **self.model_dump()}


class TokenLossParams(AlgorithmParams):
    """A per-token loss reduced by ``aggregation`` (a registered mode over global counts)."""

    aggregation: str = Field("token_mean", description="A registered loss aggregation.")

    @field_validator("aggregation")
    @classmethod
    def _registered(cls, value: str) -> str:
        return choose(value, AGGREGATIONS, "aggregation")


class PPOClipParams(TokenLossParams):
    """PPO's clipped ratio (arXiv 1707.06347, Eq. 7), with clip-higher and the dual clip.

    ``clip_eps_low`` = ``clip_eps_high`` = 0.2 as in PPO, GRPO, verl and TRL; clip-higher
    (ε_high = 0.28, DAPO arXiv 2503.14476) only where a method asks for it. ``dual_clip`` c
    (arXiv 1912.09729) bounds the loss at -c·A on tokens with A < 0; None turns it off.
    """

    clip_eps_low: float = Field(0.2, ge=0.0, description="ε_low of the ratio clip.")
    clip_eps_high: float = Field(0.2, ge=0.0, description="ε_high (0.28: DAPO clip-higher).")
    dual_clip: float | None = Field(None, gt=1.0, description="c of the dual clip (null: off).")
