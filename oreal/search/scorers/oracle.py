"""The verifier as a scorer: the gold answer decides. An upper bound for search, not a method.

It needs the gold answer behind each prompt, so it only works where the problems are known: the
strategy's :meth:`~oreal.search.strategies.SearchStrategy.register_problems` maps every rendered
prompt to its :class:`~oreal.data.Problem`, and each request carries it.

Score of a (partial) solution, from the verifier's verdict on its text:

    1    the text's final answer is correct (reason ``match``);
    0.5  a partial solution with no answer yet (nothing to judge);
    0    anything else: a wrong, hedged or conflicting answer, or a finished or truncated
         solution without a correct one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oreal.search.scorers.base import ScoreRequest, ScorerInputError

__all__ = ["OracleScorer"]

UNDECIDED = 0.5


class OracleScorer:
    """Step-free outcome scores from the :class:`~oreal.verify.Verifier` against the gold."""

    name = "verifier"
    per_step = False

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        golds = []
        for request in requests:
            if request.problem is None:
                raise ScorerInputError(
                    "the verifier oracle needs the gold answer behind each prompt; give the "
                    "strategy its problems (SearchStrategy.register_problems)"
                )
            golds.append(request.problem.answer)
        texts = [r.separator.join(r.steps) for r in requests]
        truncated = [r.finish == "length" for r in requests]
        verdicts = self.verifier.verify_batch(golds, texts, truncated)
        scores = []
        for request, verdict in zip(requests, verdicts, strict=True):
            if verdict.correct:
                scores.append([1.0])
            elif request.partial and verdict.reason == "no_answer":
                scores.append([UNDECIDED])
            else:
                scores.append([0.0])
        return scores
