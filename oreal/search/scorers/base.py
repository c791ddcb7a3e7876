"""The scorer protocol: step scores in [0, 1] for partial or full solutions split into steps.

Every scorer (the verifier oracle, an outcome RM, a Qwen2.5-Math-PRM-format process RM, OREAL's
token RM, the policy's own likelihood) takes :class:`ScoreRequest` batches and returns, for each
request, one score per step (``per_step`` scorers) or one score for the whole text (outcome
scorers). :func:`solution_scores` turns them into one number per solution with an aggregation
(algorithms.md §5.4); ``model`` aggregation hands the scorer the whole prefix as a single step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from oreal.errors import UserError
from oreal.search.algorithms import Aggregation, aggregate_scores
from oreal.search.steps import STEP_SEPARATOR, join_steps

if TYPE_CHECKING:
    from oreal.data import Problem
    from oreal.rollout import FinishReason

__all__ = ["ScoreRequest", "ScorerInputError", "StepScorer", "solution_scores"]


class ScorerInputError(UserError):
    """A scorer cannot judge this request (no question or gold known for its prompt, ...)."""


@dataclass(frozen=True)
class ScoreRequest:
    """One solution to score.

    ``prompt`` is the rendered prompt the policy continued (what the token RM and the likelihood
    read); ``problem`` is the problem behind it, when known (a PRM needs its question, the oracle
    its gold answer). ``finish`` is ``None`` while the solution is still being generated, else
    why it ended: ``eos``, ``stop`` (a step gave the final answer) or ``length`` (out of tokens or
    steps, a truncated solution).
    """

    prompt: str
    steps: tuple[str, ...]
    problem: Problem | None = None
    finish: FinishReason | None = None
    separator: str = STEP_SEPARATOR

    @property
    def partial(self) -> bool:
        return self.finish is None

    @property
    def text(self) -> str:
        """The response as generated (a partial one ends with the separator it stopped at)."""
        return join_steps(self.steps, self.separator, partial=self.partial)

    def question(self, scorer: str) -> str:
        if self.problem is None:
            raise ScorerInputError(
                f"the {scorer} scorer needs the question behind each prompt; give the strategy "
                "its problems (SearchStrategy.register_problems), as oreal search does"
            )
        return self.problem.question


@runtime_checkable
class StepScorer(Protocol):
    """Scores solutions; ``per_step`` says whether it gives one score per step or one in all."""

    name: str
    per_step: bool

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """For each request, its step scores (``per_step``) or ``[whole-solution score]``."""
        ...


def solution_scores(
    scorer: StepScorer, requests: Sequence[ScoreRequest], aggregation: Aggregation
) -> tuple[list[float], list[list[float]]]:
    """One score per request, and the raw scores it was aggregated from, in one scorer call.

    With ``model`` the steps of each request are joined into one step first, so the scorer sees
    the whole prefix as a single step and its one score is the solution's score.
    """
    if not requests:
        return [], []
    if aggregation == "model":
        requests = [
            replace(r, steps=(r.separator.join(r.steps),)) if len(r.steps) > 1 else r
            for r in requests
        ]
    raw = scorer.score(requests)
    if len(raw) != len(requests):
        raise RuntimeError(f"{scorer.name} returned {len(raw)} results for {len(requests)}")
    how: Aggregation = aggregation if scorer.per_step else "last"
    return [aggregate_scores(scores, how) for scores in raw], raw
