"""Methods that sample N full solutions and pick one: majority vote, best-of-N, weighted majority.

* Majority vote (self-consistency; Wang et al., arXiv 2203.11171): the most frequent answer group
  wins, its first member is returned. No scorer.
* Best-of-N: the solution with the highest aggregated score (algorithms.md §6).
* Weighted majority: the answer group with the largest sum of scores wins; its best-scored
  solution is returned (GenPRM's selection; algorithms.md §5.2).

Answer groups are formed as ``oreal eval``'s maj@k forms them (:mod:`oreal.search.voting`).

A :class:`SamplePool` lets every sampling method and budget of one run share the same samples:
it draws ``size`` (the largest budget) solutions per (prompt, sample) once, and a method at budget
N uses the first N, as drawing N alone would (the first N of i.i.d. draws are N i.i.d. draws; on
a keyed backend they are exactly the samples a pool of N would hold, since sample i of a search
is keyed by (seed, search, i)).
Each search is charged only what its N samples cost: their tokens, their scorer calls, and their
share of the pooled calls' wall time. Without a shared pool each strategy makes its own, of size
N, and empties it after every call (so a trainer's ``sync_weights`` never meets stale samples).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oreal.search.algorithms import best_index, keyed_rng, weighted_vote
from oreal.search.scorers.base import ScoreRequest, StepScorer, solution_scores
from oreal.search.steps import split_steps
from oreal.search.strategies.base import SearchResult, SearchStrategy, SearchUnit
from oreal.search.voting import extract_votes, group_answers

if TYPE_CHECKING:
    from oreal.rollout import FinishReason, SamplingParams

__all__ = ["BestOfN", "MajorityVote", "Sample", "SamplePool", "WeightedMajority"]


@dataclass(frozen=True)
class Sample:
    """One full solution and the generation time charged to it."""

    text: str
    response_ids: list[int]
    finish: FinishReason
    seconds: float


class SamplePool:
    """``size`` full samples per (prompt, sample), and their scores per (scorer, aggregation)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size = size
        self._samples: dict[tuple[str, int], list[Sample]] = {}
        self._scores: dict[tuple[int, str, str, int], list[tuple[float, float]]] = {}
        self._settings: tuple[Any, ...] | None = None

    def clear(self) -> None:
        self._samples.clear()
        self._scores.clear()
        self._settings = None

    def samples(
        self, strategy: SearchStrategy, units: list[SearchUnit], params: SamplingParams
    ) -> list[list[Sample]]:
        """The pool's samples of each unit, drawing those not drawn yet in one call."""
        from oreal.rollout import SamplingParams

        settings = (params.max_new_tokens, params.temperature, params.top_p, params.top_k)
        if self._settings is not None and settings != self._settings:
            raise ValueError("a SamplePool serves one sampling setting; clear() it to change")
        self._settings = settings
        missing = list(
            {
                (u.prompt, u.sample): u for u in units if (u.prompt, u.sample) not in self._samples
            }.values()
        )
        if missing:
            seed = None  # keyed by the config seed and each search, not by the chunk
            if params.seed is not None:
                seed = int(keyed_rng(strategy.config.seed, "pool").integers(0, 2**31 - 1))
            full = SamplingParams(
                max_new_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                seed=seed,
            )
            start = time.perf_counter()
            batch = strategy.generator.generate(
                [u.prompt for u in missing],
                full,
                self.size,
                keys=[u.row_key("pool") for u in missing],
            )
            elapsed = time.perf_counter() - start
            strategy._pooled_seconds += elapsed
            share = elapsed / len(batch.outputs)
            for out in batch.outputs:
                unit = missing[out.group]
                self._samples.setdefault((unit.prompt, unit.sample), []).append(
                    Sample(out.text, list(out.response_ids), out.finish_reason, share)
                )
        return [self._samples[(u.prompt, u.sample)] for u in units]

    def scores(
        self, strategy: SearchStrategy, scorer: StepScorer, units: list[SearchUnit]
    ) -> list[list[tuple[float, float]]]:
        """(aggregated score, scoring seconds) of each pool sample of each unit, one call."""
        aggregation = strategy.config.aggregation

        def key(u: SearchUnit) -> tuple[int, str, str, int]:
            return (id(scorer), aggregation, u.prompt, u.sample)

        missing = list({key(u): u for u in units if key(u) not in self._scores}.values())
        if missing:
            requests, owners = [], []
            for unit in missing:
                for sample in self._samples[(unit.prompt, unit.sample)]:
                    steps = tuple(split_steps(sample.text, strategy.config.separator))
                    requests.append(
                        ScoreRequest(
                            unit.prompt,
                            steps,
                            unit.problem,
                            sample.finish,
                            strategy.config.separator,
                        )
                    )
                    owners.append(unit)
            start = time.perf_counter()
            values, _ = solution_scores(scorer, requests, aggregation)
            elapsed = time.perf_counter() - start
            strategy._pooled_seconds += elapsed
            for unit, value in zip(owners, values, strict=True):
                self._scores.setdefault(key(unit), []).append((value, elapsed / len(requests)))
        return [self._scores[key(u)] for u in units]


class _PooledStrategy(SearchStrategy):
    """Draw (or reuse) N samples per search, charge them, let :meth:`choose` pick one."""

    def __init__(self, *args: Any, pool: SamplePool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._private_pool = pool is None
        self.pool = pool if pool is not None else SamplePool(self.budget)
        if self.pool.size < self.budget:
            raise ValueError(f"the sample pool holds {self.pool.size} < budget {self.budget}")

    def choose(self, samples: list[list[Sample]], scores: list[list[float]] | None) -> list[int]:
        raise NotImplementedError

    def search(self, units: list[SearchUnit], params: SamplingParams) -> list[SearchResult]:
        n = self.budget
        try:
            drawn = [s[:n] for s in self.pool.samples(self, units, params)]
            scores: list[list[float]] | None = None
            if self.scorer is not None:
                scored = [s[:n] for s in self.pool.scores(self, self.scorer, units)]
                scores = [[value for value, _ in row] for row in scored]
                for unit, row in zip(units, scored, strict=True):
                    unit.stats.scored_sequences += len(row)
                    unit.stats.wall_s += sum(seconds for _, seconds in row)
            for unit, row in zip(units, drawn, strict=True):
                unit.stats.generated_tokens += sum(len(s.response_ids) for s in row)
                unit.stats.generated_sequences += len(row)
                unit.stats.wall_s += sum(s.seconds for s in row)
            chosen = self.choose(drawn, scores)
        finally:
            if self._private_pool:
                self.pool.clear()
        results = []
        for i, (row, index) in enumerate(zip(drawn, chosen, strict=True)):
            sample = row[index]
            score = scores[i][index] if scores is not None else None
            results.append(SearchResult(sample.text, sample.response_ids, sample.finish, score, n))
        return results

    def _groups(self, samples: list[list[Sample]]) -> list[list[int | None]]:
        mode = getattr(self.verifier, "mode", "strict")
        votes = [
            extract_votes([s.text for s in row], [s.finish == "length" for s in row], mode)
            for row in samples
        ]
        return group_answers(votes, self.verifier)


class MajorityVote(_PooledStrategy):
    """Self-consistency: the most frequent answer group's first member (no scorer)."""

    method = "majority"
    needs_scorer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scorer = None  # a vote never pays for scores

    def choose(self, samples: list[list[Sample]], scores: list[list[float]] | None) -> list[int]:
        from oreal.eval.metrics import majority_vote

        chosen = []
        for groups in self._groups(samples):
            winner = majority_vote(groups)
            chosen.append(0 if winner is None else winner)
        return chosen


class BestOfN(_PooledStrategy):
    """The highest aggregated score."""

    method = "best_of_n"

    def choose(self, samples: list[list[Sample]], scores: list[list[float]] | None) -> list[int]:
        assert scores is not None
        return [best_index(row) for row in scores]


class WeightedMajority(_PooledStrategy):
    """The answer group with the largest total score; its best-scored member."""

    method = "weighted_majority"

    def choose(self, samples: list[list[Sample]], scores: list[list[float]] | None) -> list[int]:
        assert scores is not None
        chosen = []
        for groups, row in zip(self._groups(samples), scores, strict=True):
            winner = weighted_vote(groups, row)
            chosen.append(best_index(row) if winner is None else winner)
        return chosen
