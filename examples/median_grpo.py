"""A user-written algorithm, registered from its own file: GRPO's loss with a group-median
baseline. Train with it from the command line:

    oreal train algorithm.name=median_grpo algorithm.plugins=[examples/median_grpo.py] \
        algorithm.params.scale=2
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from oreal.algorithms import AdvantageResult, PPOClipParams, register_algorithm, register_estimator


@register_estimator("median_baseline")
@torch.no_grad()
def median_baseline(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, scale: float = 1.0
) -> AdvantageResult:
    """A_i = scale · (r_i − median_g r): a baseline that one outlier cannot move."""
    advantages = torch.zeros_like(rewards)
    pass_rate = torch.zeros_like(rewards)
    for group in group_ids.unique():
        rows = group_ids == group
        advantages[rows] = scale * (rewards[rows] - rewards[rows].median())
        pass_rate[rows] = (rewards[rows] > 0).float().mean()
    keep = torch.ones_like(rewards, dtype=torch.bool)
    return AdvantageResult(advantages, keep, rewards > 0, pass_rate)


@register_algorithm("median_grpo", paper="an example: GRPO's PPO-clip loss, a median baseline")
class MedianGRPO(PPOClipParams):
    """PPO clip 0.2, token mean, no KL (the PPOClipParams defaults) and the median baseline."""

    estimator: ClassVar[str] = "median_baseline"
    policy_loss: ClassVar[str] = "ppo_clip"
    scale: float = Field(1.0, gt=0.0, description="Multiplies every advantage.")
