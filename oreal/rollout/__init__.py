"""Rollout generation: the :class:`Generator` protocol and its backends."""

from oreal.rollout.base import (
    FinishReason,
    GenerationOutput,
    Generator,
    RolloutBatch,
    SamplingParams,
)
from oreal.rollout.fast import FastGenerator, make_cpu_generator
from oreal.rollout.hf import HFGenerator, generation_mode

__all__ = [
    "FastGenerator",
    "FinishReason",
    "GenerationOutput",
    "Generator",
    "HFGenerator",
    "RolloutBatch",
    "SamplingParams",
    "generation_mode",
    "make_cpu_generator",
]
