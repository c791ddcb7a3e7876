"""Rollout generation: the :class:`Generator` protocol, its transformers backend, and the
padding step that turns rollouts into training tensors."""

from oreal.rollout.base import (
    FinishReason,
    GenerationOutput,
    Generator,
    RolloutBatch,
    SamplingParams,
    TrainTensors,
    pad_rollouts,
)
from oreal.rollout.hf import HFGenerator, generation_mode

__all__ = [
    "FinishReason",
    "GenerationOutput",
    "Generator",
    "HFGenerator",
    "RolloutBatch",
    "SamplingParams",
    "TrainTensors",
    "generation_mode",
    "pad_rollouts",
]
