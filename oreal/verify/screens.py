"""Cheap pre-screens that keep dangerous inputs away from sympy.

Why they exist: sympy evaluates integer powers and factorials eagerly, and CPython's big-int
arithmetic runs in C where no signal can interrupt it, so ``\\boxed{9^{9^{9^{9}}}}`` would pin
a worker (and its memory) until it is killed. The ANTLR LaTeX parser is also super-linear in
nesting depth (ten nested parentheses already take seconds). These screens run in the calling
process on plain strings, in linear time, and turn such inputs into ``too_long`` verdicts before
anything is parsed. The hard per-task deadline in the worker pool remains the backstop for
whatever slips through.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_LOG10_E = math.log10(math.e)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Constants with a magnitude above 1: raised to a huge power they cost as much as a huge integer
# power (``e^{10^{6}}`` takes ~10 CPU seconds to compare with a float gold).
_CONSTANTS = {"e": _LOG10_E, "\\pi": math.log10(math.pi)}
# Functions growing like exp: their value has about arg * log10(e) digits.
_EXPONENTIAL = frozenset({"\\exp", "\\sinh", "\\cosh"})
_DIGITS = frozenset("0123456789")
_OPEN = "{(["
_CLOSE = "})]"


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied before parsing; every one of them yields ``too_long`` when exceeded.

    The defaults are far above what a real final answer needs (MATH and OlympiadBench answers
    are at most a few hundred characters with nesting depth around five) and far below what
    makes the parser or sympy slow.
    """

    max_response_chars: int = 200_000
    max_answer_chars: int = 2_000
    max_depth: int = 10
    max_digits: int = 100_000
    max_exponent_log10: float = 6.0
    max_factorial: int = 20_000


DEFAULT_LIMITS = Limits()


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting of ``{}``, ``()`` and ``[]`` taken together (escapes included)."""
    depth = best = 0
    for ch in text:
        if ch in _OPEN:
            depth += 1
            if depth > best:
                best = depth
        elif ch in _CLOSE and depth > 0:
            depth -= 1
    return best


class _TooBig(Exception):
    """Raised inside the estimator as soon as a bound is exceeded."""


class _Estimator:
    """Upper bound on log10 |value| of the numeric skeleton of a LaTeX string.

    Symbols count as magnitude 1 except the constants ``e`` and ``\\pi``, every atom's magnitude is
    multiplied in (an over-estimate for sums and fractions, which is the safe direction), ``^``
    multiplies the base's log by the exponent's value, ``!`` applies Stirling and ``\\exp``,
    ``\\sinh`` and ``\\cosh`` of ``v`` count ``v log10(e)`` digits. The walk is linear in the input
    length and its recursion depth is bounded by the nesting depth, which is screened first.
    """

    def __init__(self, text: str, limits: Limits) -> None:
        self.s = text
        self.limits = limits

    def _group_end(self, i: int) -> int:
        """Index just past the bracket group opening at ``i`` (or the end of the string)."""
        depth = 0
        for j in range(i, len(self.s)):
            ch = self.s[j]
            if ch in _OPEN:
                depth += 1
            elif ch in _CLOSE:
                depth -= 1
                if depth == 0:
                    return j + 1
        return len(self.s)

    def _atom(self, i: int) -> tuple[float, int]:
        """Read one atom at ``i``; return (log10 bound, index after it)."""
        s = self.s
        ch = s[i]
        m = _NUMBER.match(s, i) if ch in _DIGITS else None
        if m is not None:
            whole = m.group().split(".")[0].lstrip("0")
            if not whole:
                return 0.0, m.end()
            head = whole[:15]
            return len(whole) - len(head) + math.log10(int(head)), m.end()
        if ch in _OPEN:
            end = self._group_end(i)
            return self.bound(s[i + 1 : end - 1]), end
        if ch == "\\":
            j = i + 1
            while j < len(s) and s[j].isalpha():
                j += 1
            command = s[i:j]
            if command in _EXPONENTIAL:
                return self._exponential(j)
            return _CONSTANTS.get(command, 0.0), max(j, i + 2)
        return _CONSTANTS.get(ch, 0.0), i + 1

    def _exponential(self, i: int) -> tuple[float, int]:
        """``\\exp`` (or ``\\sinh``, ``\\cosh``) applied to the atom at ``i``."""
        s = self.s
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            return 0.0, i
        arg_log, end = self._atom(i)
        if arg_log > self.limits.max_exponent_log10:
            raise _TooBig
        return 10.0**arg_log * _LOG10_E, end

    def _exponent(self, i: int) -> tuple[float, int]:
        """Read the exponent after a ``^`` at ``i - 1``; a command takes its brace arguments."""
        s = self.s
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            return 0.0, i
        if s[i] == "\\":
            log, j = self._atom(i)
            total = log
            while j < len(s) and s[j] == "{":
                log, j = self._atom(j)
                total += log
            return total, j
        # A bare number is read whole (``10^23`` as ``10^{23}``): over-estimating is the safe side.
        return self._atom(i)

    def bound(self, s: str) -> float:
        """log10 bound of ``s``; raises :class:`_TooBig` when a limit is crossed."""
        sub = _Estimator(s, self.limits)
        total = 0.0
        i = 0
        while i < len(s):
            if s[i].isspace() or s[i] in _CLOSE or s[i] in "^!":
                i += 1
                continue
            log, i = sub._atom(i)
            while i < len(s):
                while i < len(s) and s[i].isspace():
                    i += 1
                if i < len(s) and s[i] == "^":
                    exp_log, i = sub._exponent(i + 1)
                    if exp_log > self.limits.max_exponent_log10:
                        raise _TooBig
                    log *= 10.0**exp_log
                elif i < len(s) and s[i] == "!":
                    i += 1
                    if log > math.log10(self.limits.max_factorial):
                        raise _TooBig
                    n = 10.0**log
                    log = math.lgamma(n + 1.0) * _LOG10_E
                else:
                    break
                if log > self.limits.max_digits:
                    raise _TooBig
            total += log
            if total > self.limits.max_digits:
                raise _TooBig
        return total


def too_big_to_evaluate(text: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """True when evaluating ``text`` could build a number beyond the limits.

    Catches exponent towers (``9^{9^{9^{9}}}``), huge exponents (``x^{10^{7}}``), huge powers
    (``2^{10^{6}}``, ``e^{10^{6}}``, ``\\exp(10^{6})``) and huge factorials (``100000!``,
    ``(10^5)!``). Call only on strings that
    passed the length and depth screens.
    """
    if "^" not in text and "!" not in text and not any(f in text for f in _EXPONENTIAL):
        return False
    try:
        _Estimator(text, limits).bound(text)
    except (_TooBig, ValueError, OverflowError, RecursionError):
        return True
    except Exception:  # a bug here must not break verification; the deadlines still apply
        return False
    return False


def screen_answer(text: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """True when an extracted answer (or a gold) must not reach the parser: ``too_long``."""
    return (
        len(text) > limits.max_answer_chars
        or nesting_depth(text) > limits.max_depth
        or too_big_to_evaluate(text, limits)
    )
