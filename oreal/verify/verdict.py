"""The verdict type and the closed set of reason codes.

A verdict is the only thing the trainer and the evaluator see, so it is small, immutable and
picklable (it crosses process boundaries), and its ``reason`` is a fixed vocabulary that logs,
dashboards and tests can rely on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MATCH = "match"
"""The extracted answer is equivalent to the gold answer (the only reason with ``correct=True``)."""
MISMATCH = "mismatch"
"""An answer was extracted and compared, and it is not equivalent to the gold answer."""
NO_ANSWER = "no_answer"
"""Nothing answer-like was found (strict: no ``\\boxed{}``; lenient: no box, phrase or number)."""
EMPTY = "empty"
"""The final box is empty or a placeholder (``\\boxed{}``, ``?``, ``N/A``, ``\\text{answer}``)."""
NEGATED = "negated"
"""The answer is negated ("the answer is not \\boxed{70}")."""
HEDGED = "hedged"
"""Alternatives were offered for a single-answer question ("(A) or (C)", every option listed)."""
UNEVALUATED = "unevaluated"
"""The gold is an integer and the answer is arithmetic still to be done (``\\boxed{7 + 47}``,
``\\boxed{\\frac{108}{2}}``): equivalent to sympy, but restating the question is not answering
it, and a policy rewarded for it learns to copy the question into the box."""
TRUNCATED = "truncated"
"""The caller flagged the response as truncated (it did not end with the stop token)."""
TIMEOUT = "timeout"
"""The equivalence check exceeded its time limit; the worker was interrupted or replaced."""
TOO_LONG = "too_long"
"""A size screen fired before any parsing: response or answer too long, nesting too deep, or a
number too large to evaluate safely (exponent towers, huge factorials)."""
INVALID_GOLD = "invalid_gold"
"""The gold answer is empty, so nothing can be correct."""
ERROR = "error"
"""The check failed unexpectedly (a worker crashed or raised); counted as incorrect."""

REASONS: tuple[str, ...] = (
    MATCH,
    MISMATCH,
    NO_ANSWER,
    EMPTY,
    NEGATED,
    HEDGED,
    UNEVALUATED,
    TRUNCATED,
    TIMEOUT,
    TOO_LONG,
    INVALID_GOLD,
    ERROR,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one check.

    ``correct`` is what the reward uses; ``extracted`` is the answer string that was judged
    (``None`` when none could be extracted) and ``reason`` one of :data:`REASONS`, so that a
    reward of -1 can always be traced back to a rule.
    """

    correct: bool
    extracted: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON output (``oreal verify``) and logging."""
        return asdict(self)
