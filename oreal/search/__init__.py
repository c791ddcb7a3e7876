"""Inference-time scaling: scorers (verifier oracle, outcome RM, process RM, OREAL's token RM,
policy likelihood) and search strategies that are themselves :class:`~oreal.rollout.Generator`
objects (majority vote, best-of-N, weighted majority, beam search, DVTS, particle filtering,
particle Gibbs), so ``evaluate_problems`` and ``oreal eval`` use them unchanged.

``oreal search`` (:mod:`oreal.search.runner`) runs methods x budgets and writes the eval layout.
Docs: docs/search.md.
"""

from oreal.search.algorithms import (
    AGGREGATIONS,
    aggregate_scores,
    resample,
    resampling_weights,
    weighted_vote,
)
from oreal.search.scorers import ScoreRequest, StepScorer, load_scorer, solution_scores
from oreal.search.steps import STEP_SEPARATOR, join_steps, split_steps
from oreal.search.strategies import (
    METHODS,
    SamplePool,
    SearchConfig,
    SearchStats,
    SearchStrategy,
    build_strategy,
)

__all__ = [
    "AGGREGATIONS",
    "METHODS",
    "STEP_SEPARATOR",
    "SamplePool",
    "ScoreRequest",
    "SearchConfig",
    "SearchStats",
    "SearchStrategy",
    "StepScorer",
    "aggregate_scores",
    "build_strategy",
    "join_steps",
    "load_scorer",
    "resample",
    "resampling_weights",
    "solution_scores",
    "split_steps",
    "weighted_vote",
]
