"""Rollout generation: the :class:`Generator` protocol and its backends."""

from oreal.rollout.base import (
    FinishReason,
    GenerationOutput,
    Generator,
    RolloutBatch,
    SamplingParams,
)
from oreal.rollout.hf import HFGenerator, generation_mode

__all__ = [
    "FinishReason",
    "GenerationOutput",
    "Generator",
    "HFGenerator",
    "RolloutBatch",
    "SamplingParams",
    "generation_mode",
]
