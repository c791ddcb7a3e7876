"""Search strategies, each a :class:`~oreal.rollout.Generator` (see :mod:`.base`).

``build_strategy(method, generator, scorer, budget=N, ...)`` makes one by name; ``METHODS``
lists the names in the order reports show them.
"""

from __future__ import annotations

from typing import Any

from oreal.search.strategies.base import (
    SearchConfig,
    SearchResult,
    SearchStats,
    SearchStrategy,
    SearchUnit,
    Trajectory,
)
from oreal.search.strategies.particles import ParticleFiltering, ParticleGibbs, check_gibbs_budget
from oreal.search.strategies.sampling import BestOfN, MajorityVote, SamplePool, WeightedMajority
from oreal.search.strategies.tree import DVTS, BeamSearch

__all__ = [
    "DVTS",
    "METHODS",
    "POOLED_METHODS",
    "BeamSearch",
    "BestOfN",
    "MajorityVote",
    "ParticleFiltering",
    "ParticleGibbs",
    "SamplePool",
    "SearchConfig",
    "SearchResult",
    "SearchStats",
    "SearchStrategy",
    "SearchUnit",
    "Trajectory",
    "WeightedMajority",
    "budget_problem",
    "build_strategy",
    "check_gibbs_budget",
]

_CLASSES: dict[str, type[SearchStrategy]] = {
    cls.method: cls
    for cls in (
        MajorityVote,
        BestOfN,
        WeightedMajority,
        BeamSearch,
        DVTS,
        ParticleFiltering,
        ParticleGibbs,
    )
}
METHODS: tuple[str, ...] = tuple(_CLASSES)
#: Methods that can share one SamplePool.
POOLED_METHODS: tuple[str, ...] = ("majority", "best_of_n", "weighted_majority")


def budget_problem(method: str, budget: int, config: SearchConfig) -> str | None:
    """Why ``method`` cannot run at ``budget`` (``None`` if it can)."""
    if budget < 1:
        return f"budget must be >= 1, got {budget}"
    if method == "particle_gibbs":
        try:
            check_gibbs_budget(budget, config.sweeps)
        except ValueError as error:
            return str(error)
    return None


def build_strategy(
    method: str,
    generator: Any,
    scorer: Any = None,
    *,
    budget: int,
    config: SearchConfig | None = None,
    verifier: Any = None,
    pool: SamplePool | None = None,
) -> SearchStrategy:
    """The strategy called ``method`` (one of :data:`METHODS`)."""
    if method not in _CLASSES:
        raise ValueError(f"unknown search method {method!r}; expected one of {', '.join(METHODS)}")
    cls = _CLASSES[method]
    kwargs: dict[str, Any] = {"budget": budget, "config": config, "verifier": verifier}
    if method in POOLED_METHODS:
        kwargs["pool"] = pool
    return cls(generator, scorer, **kwargs)
