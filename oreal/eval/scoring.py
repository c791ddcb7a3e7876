"""Scores from verified samples: per-problem pass@k and maj@k, means, breakdowns.

Separate from generation so that the numbers can be recomputed from saved records (a resumed
evaluation does exactly that) and tested without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from oreal.data import Problem
from oreal.eval.metrics import assign_groups, majority_vote, normalize_answer, pass_at_k

__all__ = ["EvalResult", "SampleRecord", "summarize"]

#: One verified sample, as passed to ``on_samples`` and written to generations.jsonl.
SampleRecord = dict[str, Any]


class EvalResult(BaseModel):
    """Scores of one evaluation, with the settings that produced them.

    ``accuracy`` is the mean pass@1 (``c / n`` averaged over problems; with ``n = 1`` and
    temperature 0 it is greedy pass@1, OREAL's protocol). ``pass_at_k`` and ``maj_at_k`` map k to
    the mean over problems. Response lengths count generated tokens, eos included. Breakdowns
    map a subject or level (as a string) to ``{num_problems, accuracy, pass_at_k, maj_at_k}``.
    """

    num_problems: int
    n: int
    accuracy: float
    pass_at_k: dict[int, float]
    maj_at_k: dict[int, float]
    mean_response_tokens: float
    truncation_rate: float
    #: Samples that ended (not truncated) without an extractable answer.
    no_answer_rate: float = 0.0
    num_samples: int = 0
    by_subject: dict[str, dict[str, Any]] = {}
    by_level: dict[str, dict[str, Any]] = {}
    template: str | None = None
    sampling: dict[str, Any] = {}
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (k keys become strings, as JSON requires)."""
        return self.model_dump(mode="json")


class _Equivalence:
    """Answer-vs-answer equivalence for vote grouping, batched through the verifier's pool.

    Keyed by :func:`normalize_answer` spellings (equal spellings are equal anyway).
    :meth:`prefetch` computes, for every problem at once, exactly the comparisons that
    :func:`assign_groups` will ask for, in rounds: round r compares each problem's r-th group
    representative with its still-unassigned answers, in one ``equivalent_batch`` call. The
    calls made afterwards hit the cache; a miss falls back to one ``equivalent`` call.
    """

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier
        self.cache: dict[tuple[str, str], bool] = {}

    @staticmethod
    def _key(a: str, b: str) -> tuple[str, str]:
        a, b = normalize_answer(a), normalize_answer(b)
        return (a, b) if a <= b else (b, a)

    def _batch(self, pairs: list[tuple[str, str]]) -> list[bool]:
        batch = getattr(self.verifier, "equivalent_batch", None)
        if batch is not None:
            return [bool(x) for x in batch(pairs)]
        return [bool(self.verifier.equivalent(a, b)) for a, b in pairs]

    def prefetch(self, answer_lists: Iterable[Sequence[str]]) -> None:
        """Warm the cache for each list of (wrong) answers, taken in order of appearance."""
        pending = []
        for answers in answer_lists:
            distinct = list({normalize_answer(a): a for a in reversed(answers)}.values())[::-1]
            if len(distinct) > 1:
                pending.append(distinct)
        while pending:
            pairs = [(items[0], other) for items in pending for other in items[1:]]
            todo = [pair for pair in pairs if self._key(*pair) not in self.cache]
            for pair, same in zip(todo, self._batch(todo), strict=True):
                self.cache[self._key(*pair)] = same
            remaining = []
            for items in pending:  # the representative and its matches leave the queue
                rest = [x for x in items[1:] if not self.cache[self._key(items[0], x)]]
                if len(rest) > 1:
                    remaining.append(rest)
            pending = remaining

    def __call__(self, a: str, b: str) -> bool:
        key = self._key(a, b)
        if key not in self.cache:
            self.cache[key] = self._batch([(a, b)])[0]
        return self.cache[key]


def _votes(samples: list[SampleRecord], window: int) -> list[str | None]:
    """Each sample's vote: its extracted answer; none if truncated (no final answer given)."""
    return [None if s["truncated"] else (s.get("extracted") or None) for s in samples[:window]]


def _problem_scores(
    samples: list[SampleRecord], n: int, ks: Sequence[int], equivalent: Callable[[str, str], bool]
) -> dict[str, Any]:
    """pass@k and maj@k (as 0/1) of one problem from its ``n`` sample records."""
    correct = [bool(s["correct"]) for s in samples]
    c = sum(correct)
    scores: dict[str, Any] = {"pass": {k: pass_at_k(n, c, k) for k in ks}, "maj": {}}
    window = max(ks)
    votes = _votes(samples, window)
    if window == 1:
        groups: list[int | None] = [None if votes[0] is None else 0]
    else:
        groups = assign_groups(votes, equivalent, correct[:window])
    for k in ks:
        winner = majority_vote(groups, k)
        scores["maj"][k] = float(winner is not None and correct[winner])
    return scores


def _aggregate(scores: list[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    count = len(scores)

    def mean(values: Iterable[float]) -> float:
        return sum(values) / count if count else 0.0

    return {
        "num_problems": count,
        "accuracy": mean(s["pass"][1] for s in scores),
        "pass_at_k": {k: mean(s["pass"][k] for s in scores) for k in ks},
        "maj_at_k": {k: mean(s["maj"][k] for s in scores) for k in ks},
    }


def summarize(
    problems: Sequence[Problem],
    records: dict[tuple[str, int], SampleRecord],
    *,
    n: int,
    ks: Sequence[int],
    verifier: Any,
) -> EvalResult:
    """Scores from verified sample records keyed by ``(problem_id, sample)``; all must exist.

    ``verifier`` supplies answer-vs-answer equivalence for maj@k (``equivalent_batch`` or
    ``equivalent``). ``accuracy`` is always mean pass@1 (mean ``c / n``); pass@1 and maj@1 are
    reported whether or not 1 is among ``ks``.
    """
    ks = sorted(set(ks) | {1})
    missing = [(p.id, s) for p in problems for s in range(n) if (p.id, s) not in records]
    if missing:
        raise ValueError(f"{len(missing)} samples have no record, e.g. {missing[0]}")
    by_problem = [[records[(problem.id, s)] for s in range(n)] for problem in problems]
    equivalent = _Equivalence(verifier)
    if max(ks) > 1:  # only wrong answers are ever compared (see assign_groups)
        equivalent.prefetch(
            [
                v
                for v, s in zip(_votes(samples, max(ks)), samples, strict=False)
                if v and not s["correct"]
            ]
            for samples in by_problem
        )
    per_problem = [_problem_scores(samples, n, ks, equivalent) for samples in by_problem]
    samples_all = [sample for samples in by_problem for sample in samples]
    overall = _aggregate(per_problem, ks)
    total = len(samples_all)
    breakdowns: dict[str, dict[str, dict[str, Any]]] = {}
    for field in ("subject", "level"):
        buckets: dict[str, list[dict[str, Any]]] = {}
        for problem, scores in zip(problems, per_problem, strict=True):
            value = problem.metadata.get(field)
            if value is not None and str(value).strip():
                buckets.setdefault(str(value), []).append(scores)
        breakdowns[field] = {key: _aggregate(buckets[key], ks) for key in _ordered(buckets)}
    return EvalResult(
        num_problems=len(problems),
        n=n,
        accuracy=overall["accuracy"],
        pass_at_k=overall["pass_at_k"],
        maj_at_k=overall["maj_at_k"],
        mean_response_tokens=sum(s["response_tokens"] for s in samples_all) / total if total else 0,
        truncation_rate=sum(bool(s["truncated"]) for s in samples_all) / total if total else 0,
        no_answer_rate=sum(not s["truncated"] and not s.get("extracted") for s in samples_all)
        / total
        if total
        else 0,
        num_samples=total,
        by_subject=breakdowns["subject"],
        by_level=breakdowns["level"],
    )


def _ordered(keys: Iterable[str]) -> list[str]:
    """Numeric keys (levels) in numeric order, others alphabetically."""
    return sorted(keys, key=lambda key: (0, float(key), key) if _is_number(key) else (1, 0, key))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
