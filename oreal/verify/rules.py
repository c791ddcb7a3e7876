"""The cheap, gold-aware stage that runs in the calling process.

For each (gold, response) pair it either decides the verdict from rules alone (truncation,
size screens, extraction rules, hedges, the fast path) or returns a :class:`Job` for the worker
pool. On reference solutions and trained policies the fast path (canonical answer string equals
canonical gold) settles most pairs, so sympy, IPC and the pool are skipped entirely.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from oreal.verify import verdict as R
from oreal.verify.extract import extract
from oreal.verify.normalize import (
    canonical,
    gold_parts,
    has_or_connective,
    looks_multi,
    multiple_choice_letter,
    option_letters,
)
from oreal.verify.screens import DEFAULT_LIMITS, Limits, screen_answer
from oreal.verify.verdict import Verdict

Gold = str | Sequence[str]


@dataclass(frozen=True, slots=True)
class Job:
    """A pair that needs math-verify: the gold parts and the distinct answer candidates."""

    gold: tuple[str, ...]
    answers: tuple[str, ...]
    extracted: str


def _is_hedge(parts: tuple[str, ...], answers: tuple[str, ...], or_hedge: bool) -> bool:
    """Alternatives offered where the gold is one value: "3 or 5", "(A) or (C)", "A, B, C, D"."""
    if len(parts) > 1 or looks_multi(parts[0]):
        return False
    if or_hedge:
        return True
    if multiple_choice_letter(parts[0]) is not None:
        return any(len(set(option_letters(a))) > 1 for a in answers)
    return False


_INTEGER = re.compile(r"^[-+]?\d+(?:,\d{3})*(?:\.0*)?$")
_BINARY_OPERATION = re.compile(
    r"\d\s*\)?\s*(?:[-+*/×÷·]|\\cdot|\\times|\\div|\\ast)\s*\(?\s*[-+]?\s*\d"
)
_FRACTION = re.compile(r"\\[dt]?frac")


def unevaluated_arithmetic(gold_parts: tuple[str, ...], answer: str) -> bool:
    """An integer gold answered by an unevaluated operation on numbers (``7 + 47`` for 54).

    sympy calls these equivalent, and on arithmetic tasks a policy learns within a few steps to
    box the question's own expression (seen on the CPU demo). Only integer golds are guarded:
    ``\\frac{1}{2}`` for ``0.5`` or ``6.63\\times10^{-34}`` stay valid answers.
    """
    if not all(_INTEGER.match(part.strip()) for part in gold_parts):
        return False
    return bool(_BINARY_OPERATION.search(answer) or _FRACTION.search(answer))


@lru_cache(maxsize=65_536)
def canonical_gold(parts: tuple[str, ...]) -> str:
    """Canonical form of a (possibly multi-part) gold, for the fast path; cached because a
    training batch checks many responses (a whole group) against each gold."""
    return ", ".join(canonical(p) for p in parts)


def prepare(
    gold: Gold,
    response: str,
    *,
    mode: str = "strict",
    truncated: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Verdict | Job:
    """Decide by rules, or hand back a :class:`Job` for the equivalence workers."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    parts = gold_parts(gold)
    if not any(parts):
        return Verdict(False, None, R.INVALID_GOLD)
    too_long = len(response) > limits.max_response_chars
    if truncated:  # checked first: the most informative reason for a cut-off response
        return Verdict(False, None if too_long else extract(response, mode).extracted, R.TRUNCATED)
    if too_long:
        return Verdict(False, None, R.TOO_LONG)
    found = extract(response, mode)
    if found.reason is not None:
        return Verdict(False, found.extracted, found.reason)
    answers = found.answers
    extracted = answers[-1]
    if any(len(a) > limits.max_answer_chars for a in answers):
        return Verdict(False, None, R.TOO_LONG)
    or_hedge = found.or_hedge or any(has_or_connective(a) for a in answers)
    if _is_hedge(parts, answers, or_hedge):
        return Verdict(False, extracted, R.HEDGED)
    if canonical(extracted) == canonical_gold(parts):  # the final box is the answer
        return Verdict(True, extracted, R.MATCH)
    if all(unevaluated_arithmetic(parts, a) for a in answers):
        return Verdict(False, extracted, R.UNEVALUATED)
    if any(screen_answer(a, limits) for a in answers):
        return Verdict(False, extracted, R.TOO_LONG)
    if any(screen_answer(p, limits) for p in parts):
        return Verdict(False, extracted, R.TOO_LONG)
    return Job(parts, answers, extracted)


def prepare_equivalence(a: str, b: str, limits: Limits = DEFAULT_LIMITS) -> bool | None:
    """Answer-vs-answer stage: ``True``/``False`` when rules decide, ``None`` to ask the pool."""
    if not a.strip() or not b.strip():
        return False
    if canonical(a) == canonical(b):
        return True
    if screen_answer(a, limits) or screen_answer(b, limits):
        return False
    return None
