"""A search strategy is a :class:`~oreal.rollout.Generator`: prompts in, one chosen response out.

:class:`SearchStrategy` wraps a base generator and a scorer and implements
``generate(prompts, params, num_return_sequences)``: each (prompt, sample) pair is one independent
search, and its selected solution is the sample. ``evaluate_problems(strategy, ...)``, ``oreal
eval``'s runner and the trainer's evaluation therefore use it unchanged.

Where the problems reach it: scorers that need the question (PRMs) or the gold answer (the
verifier oracle) look the problem up by rendered prompt; :meth:`SearchStrategy.register_problems`
renders every problem with the evaluation's template and remembers it (``oreal search`` does
this). Prompts it does not know are searched without a problem, which only those scorers refuse.

Budget N is the number of full-solution equivalents: N samples (sampling methods), N particles
(particle filtering), N continuations per step (beam search, DVTS), N / sweeps particles per
sweep (particle Gibbs). What a search really cost is counted per (prompt, sample) in
:class:`SearchStats` (generated tokens, generated sequences, scored sequences, wall time) and
read back with :meth:`SearchStrategy.pop_stats`.

Step-level methods share one engine: :meth:`propagate` extends every live partial solution of
every search in the batch by one step in *one* ``generate`` call (stop at the step separator; the
token budget ``params.max_new_tokens`` is per solution), and :meth:`score_trajectories` scores
them in one scorer call.

Randomness is keyed by what it is for, never by batch order. Each search is named by its
prompt, its sample index and the caller's key for the prompt (if any); every row a strategy
asks its generator for gets the key (search, call, row within the search), e.g. (problem,
sweep 0, step 3, particle 5), and the call's seed comes from the config seed and the call. On a
keyed backend (the fast CPU engine) a search therefore draws the same numbers whatever else is
in the batch (its tokens and scores still see bf16 rounding that depends on the batch's shape:
docs/rollout.md); ``HFGenerator`` ignores keys and samples in batch order. Resampling and
selection draws are keyed the same way. ``params.seed`` only says whether to seed at all (None:
unseeded).
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from oreal.search.algorithms import (
    AGGREGATIONS,
    RESAMPLING,
    Aggregation,
    Resampling,
    keyed_rng,
    stable_key,
)
from oreal.search.scorers.base import ScoreRequest, StepScorer, solution_scores
from oreal.search.steps import STEP_SEPARATOR, has_final_answer, join_steps

if TYPE_CHECKING:
    from oreal.data import Problem
    from oreal.rollout import FinishReason, Generator, RolloutBatch, SamplingParams

__all__ = [
    "SearchConfig",
    "SearchResult",
    "SearchStats",
    "SearchStrategy",
    "SearchUnit",
    "Trajectory",
]


@dataclass(frozen=True)
class SearchConfig:
    """Settings shared by the strategies; defaults follow the particle-filtering code.

    ``max_steps``: the step cap (40 in the original code, 32 in its_hub); a solution that reaches
    it without a final answer is truncated. ``tau``: softmax temperature of resampling.
    ``beam_width``: continuations per kept beam (beam search) and per subtree node (DVTS), 4 in
    search-and-learn. ``sweeps``: particle Gibbs iterations. ``seed``: resampling/selection draws.
    """

    aggregation: Aggregation = "last"
    separator: str = STEP_SEPARATOR
    max_steps: int = 40
    tau: float = 1.0
    resampling: Resampling = "multinomial"
    beam_width: int = 4
    sweeps: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.resampling not in RESAMPLING:
            raise ValueError(f"resampling must be one of {RESAMPLING}, got {self.resampling!r}")
        if not self.separator:
            raise ValueError("the step separator must be non-empty")
        if self.max_steps < 1 or self.beam_width < 1 or self.sweeps < 1:
            raise ValueError("max_steps, beam_width and sweeps must be >= 1")
        if not self.tau > 0:
            raise ValueError(f"tau must be positive, got {self.tau}")


@dataclass
class SearchStats:
    """What one search cost, and what it chose."""

    generated_tokens: int = 0
    generated_sequences: int = 0
    scored_sequences: int = 0
    steps: int = 0
    candidates: int = 0
    score: float | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Trajectory:
    """A partial or finished solution: its steps, their sampled ids, its score after each step."""

    steps: list[str] = field(default_factory=list)
    step_ids: list[list[int]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    finish: FinishReason | None = None

    @property
    def active(self) -> bool:
        return self.finish is None

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.step_ids)

    @property
    def weight(self) -> float:
        """The latest (aggregated) score; 0.5 before the first scoring."""
        return self.weights[-1] if self.weights else 0.5

    def weight_at(self, depth: int) -> float:
        """The score it had after ``depth`` steps (its final one if it ended earlier)."""
        return self.weights[min(depth, len(self.weights)) - 1]

    def copy(self) -> Trajectory:
        return Trajectory(
            list(self.steps), [list(i) for i in self.step_ids], list(self.weights), self.finish
        )

    def truncated(self, depth: int) -> Trajectory:
        """Its first ``depth`` steps, live again unless that is all of it."""
        if depth >= len(self.steps):
            return self.copy()
        return Trajectory(
            self.steps[:depth], [list(i) for i in self.step_ids[:depth]], self.weights[:depth]
        )


@dataclass
class SearchUnit:
    """One search: a prompt, which of its samples this is, its problem (if known), its costs.

    ``key`` is the caller's key for the prompt (``Generator.generate(..., keys=)``), if any.
    """

    prompt: str
    sample: int
    problem: Problem | None
    stats: SearchStats = field(default_factory=SearchStats)
    key: int | None = None

    @property
    def name(self) -> str:
        """What names this search in every key drawn for it."""
        caller = "" if self.key is None else str(self.key)
        return f"{caller}|{self.sample}|{self.prompt}"

    def rng(self, seed: int, *keys: int | str) -> np.random.Generator:
        return keyed_rng(seed, self.name, *keys)

    def row_key(self, *parts: int | str) -> int:
        """The generator key of one row this search asks for."""
        return stable_key(self.name, *parts)


@dataclass
class SearchResult:
    """The solution a search returns (``pool``: the final particles, for methods that have one)."""

    text: str
    response_ids: list[int]
    finish: FinishReason
    score: float | None = None
    candidates: int = 1
    pool: list[Trajectory] | None = None

    @classmethod
    def of(cls, trajectory: Trajectory, separator: str, candidates: int) -> SearchResult:
        return cls(
            text=separator.join(trajectory.steps),
            response_ids=[t for ids in trajectory.step_ids for t in ids],
            finish=trajectory.finish or "length",
            score=trajectory.weight if trajectory.weights else None,
            candidates=candidates,
        )


class SearchStrategy(ABC):
    """Base class: the Generator face, problem lookup, cost ledger and the step engine."""

    method: ClassVar[str]
    needs_scorer: ClassVar[bool] = True

    def __init__(
        self,
        generator: Generator,
        scorer: StepScorer | None = None,
        *,
        budget: int,
        config: SearchConfig | None = None,
        verifier: Any = None,
    ) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        if self.needs_scorer and scorer is None:
            raise ValueError(f"{self.method} needs a scorer")
        self.generator = generator
        self.tokenizer = generator.tokenizer
        self.scorer = scorer
        self.budget = budget
        self.config = config or SearchConfig()
        self.verifier = verifier
        self._problems: dict[str, Problem] = {}
        self._ledger: dict[tuple[str, int], list[SearchStats]] = {}
        self._pooled_seconds = 0.0  # time spent filling a shared pool, charged per row there

    # -- the Generator face ------------------------------------------------------------------
    def register_problems(self, problems: Iterable[Problem], template: str) -> None:
        """Remember which problem each prompt rendered with ``template`` comes from."""
        from oreal.data import render_prompt

        for problem in problems:
            self._problems[render_prompt(problem, self.tokenizer, template)] = problem

    def sync_weights(self, model: Any) -> None:
        self.generator.sync_weights(model)

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """Search once per (prompt, sample); return the chosen solutions in prompt-major order.

        ``keys`` (optional, one per prompt) join the prompt and the sample in naming a search.
        """
        from oreal.rollout import GenerationOutput, RolloutBatch
        from oreal.rollout.base import generation_stats

        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        if num_return_sequences < 1:
            raise ValueError("num_return_sequences must be >= 1")
        if keys is not None and len(keys) != len(prompts):
            raise ValueError("keys must be one integer per prompt")
        k = num_return_sequences
        units = [
            SearchUnit(
                prompt=p,
                sample=i,
                problem=self._problems.get(p),
                key=None if keys is None else int(keys[g]),
            )
            for g, p in enumerate(prompts)
            for i in range(k)
        ]
        start = time.perf_counter()
        self._pooled_seconds = 0.0
        results = self.search(units, params)
        unpooled = time.perf_counter() - start - self._pooled_seconds
        prompt_ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        outputs = []
        for index, (unit, result) in enumerate(zip(units, results, strict=True)):
            unit.stats.wall_s += unpooled / len(units)
            unit.stats.score = result.score
            unit.stats.candidates = result.candidates
            self._ledger.setdefault((unit.prompt, unit.sample), []).append(unit.stats)
            group = index // k
            outputs.append(
                GenerationOutput(
                    group=group,
                    sample=unit.sample,
                    prompt=unit.prompt,
                    prompt_ids=list(prompt_ids[group]),
                    response_ids=result.response_ids,
                    text=result.text,
                    finish_reason=result.finish,
                )
            )
        elapsed = time.perf_counter() - start
        generated = sum(u.stats.generated_tokens for u in units)
        stats = generation_stats(outputs, elapsed, generated_tokens=generated)
        stats["scored_sequences"] = float(sum(u.stats.scored_sequences for u in units))
        return RolloutBatch(outputs=outputs, num_prompts=len(prompts), k=k, stats=stats)

    def pop_stats(self, prompt: str, sample: int) -> SearchStats | None:
        """The costs of the oldest search of (prompt, sample) not yet read back."""
        queue = self._ledger.get((prompt, sample))
        if not queue:
            return None
        stats = queue.pop(0)
        if not queue:
            del self._ledger[(prompt, sample)]
        return stats

    @abstractmethod
    def search(self, units: list[SearchUnit], params: SamplingParams) -> list[SearchResult]:
        """One result per unit, in order."""

    # -- the step engine ---------------------------------------------------------------------
    def call_seed(self, params: SamplingParams, *keys: int | str) -> int | None:
        """The seed of one generate call, from the config seed and ``keys`` (what the call is
        for); ``None`` when ``params.seed`` is ``None`` (unseeded sampling)."""
        if params.seed is None:
            return None
        return int(keyed_rng(self.config.seed, self.method, *keys).integers(0, 2**31 - 1))

    def propagate(
        self, pairs: list[tuple[SearchUnit, Trajectory]], params: SamplingParams, *, key: str
    ) -> None:
        """Extend each live trajectory by one step, all in one ``generate`` call.

        A trajectory ends on eos, when the step gives a final answer (``\\boxed``: finish
        ``stop``), when its token budget runs out, or at the step cap (both ``length``).
        """
        from oreal.rollout import SamplingParams

        if not pairs:
            return
        sep = self.config.separator
        prompts = [unit.prompt + join_steps(t.steps, sep, partial=True) for unit, t in pairs]
        limit = params.max_new_tokens
        remaining = [limit - t.tokens for _, t in pairs]
        step_params = SamplingParams(
            max_new_tokens=max(1, max(remaining)),
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            stop=(sep,),
            seed=self.call_seed(params, key),
        )
        rows: dict[int, int] = {}  # a search's rows are numbered in its own order
        row_keys = []
        for unit, _ in pairs:
            rows[id(unit)] = rows.get(id(unit), -1) + 1
            row_keys.append(unit.row_key(self.method, key, rows[id(unit)]))
        batch = self.generator.generate(prompts, step_params, 1, keys=row_keys)
        for (unit, trajectory), out, left in zip(pairs, batch.outputs, remaining, strict=True):
            unit.stats.generated_tokens += len(out.response_ids)
            unit.stats.generated_sequences += 1
            ids, text, reason = list(out.response_ids), out.text, out.finish_reason
            if len(ids) > left:  # the batch ran longer than this solution's own budget
                ids = ids[: max(left, 0)]
                text = self.tokenizer.decode(ids, skip_special_tokens=False)
                reason = "length"
            trajectory.steps.append(text)
            trajectory.step_ids.append(ids)
            if reason in ("eos", "length"):
                trajectory.finish = reason
            elif has_final_answer(text):
                trajectory.finish = "stop"
            elif len(trajectory.steps) >= self.config.max_steps or trajectory.tokens >= limit:
                trajectory.finish = "length"  # the step cap, or no token left for another step

    def score_trajectories(self, pairs: list[tuple[SearchUnit, Trajectory]]) -> None:
        """Score every trajectory in one scorer call; append each one's aggregated score."""
        if not pairs:
            return
        assert self.scorer is not None
        requests = [
            ScoreRequest(
                prompt=unit.prompt,
                steps=tuple(t.steps),
                problem=unit.problem,
                finish=t.finish,
                separator=self.config.separator,
            )
            for unit, t in pairs
        ]
        values, _ = solution_scores(self.scorer, requests, self.config.aggregation)
        for (unit, trajectory), value in zip(pairs, values, strict=True):
            trajectory.weights.append(value)
            unit.stats.scored_sequences += 1
