"""Mathematical equivalence on top of math-verify; this module runs inside worker processes.

Everything that can be slow or explode (LaTeX parsing with ANTLR, sympy simplification) lives
here and runs under the CPU-time budget of :mod:`oreal.verify.worker`. Inputs were already
screened for size.

Only math-verify's LaTeX extraction is used. Its plain-expression extractor calls sympy's
``parse_expr``, which runs Python ``eval`` on the text, so model output must never go there.

Additions over plain math-verify, each for a known failure:

* the final box is the answer; against a multi-valued gold several boxes may also list it
  together (``\\boxed{3}, \\boxed{5}``);
* a percent sign on one side only also compares the bare numbers (``62.5\\%`` and ``62.5``);
* a numeric guard rejects what math-verify's absolute 6-decimal rounding accepts for tiny
  magnitudes (``6.6\\times10^{-34}`` vs ``6.63\\times10^{-34}``, ``0`` vs ``10^{-9}``);
* a gold written as ``name = value`` whose left side the parser rejects (``I_{\\max}=...``) is
  retried on its right side.
"""

from __future__ import annotations

import contextlib
import logging
import re
from functools import lru_cache
from typing import Any

from oreal.verify import verdict as R
from oreal.verify.normalize import canonical, for_parser

_NAME_LHS = re.compile(r"^\s*([A-Za-z\\|][^=<>+\-]*?)\s*(?:=|\\approx)(?!=)\s*(.+)$", re.DOTALL)
_TRAILING_PERCENT = re.compile(r"\s*\\%\s*$")
_REL_TOL = 1e-6
_ABS_TOL = 1e-6
_ABS_TOL_MIN_MAGNITUDE = 1e-2


# One pair per common answer shape: the first parse of each shape builds ANTLR's prediction DFA
# and fills sympy's caches, which costs ~0.1-1 s. Done once in the forkserver, every worker
# forked from it (including replacements of killed workers) starts with the work done.
_WARM_PAIRS = (
    ("\\frac{1}{2}", "0.5"),
    ("\\sqrt{2}", "2^{1/2}"),
    ("(0,1]", "(0, 1]"),
    ("\\{1,2\\}", "1, 2"),
    ("(1,2),(3,4)", "(3, 4), (1, 2)"),
    ("x=1", "1"),
    ("x \\geq 2", "[2, \\infty)"),
    ("-2 \\le x \\le 7", "x \\in [-2,7]"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1 & 2\\\\ 3 & 4\\end{pmatrix}"),
    ("28\\%", "28"),
    ("\\text{(B)}", "B"),
    ("2\\pi", "\\pi \\cdot 2"),
    ("\\sin x", "\\cos(\\frac{\\pi}{2}-x)"),
    ("a_{n}=2n+1", "2n+1"),
    ("3\\times10^{8}", "300000000"),
    ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"),
    ("y = 2x + 1", "2x - y + 1 = 0"),
    ("\\log_2 8", "3"),
    ("1 \\pm \\sqrt{19}", "1 - \\sqrt{19}, 1 + \\sqrt{19}"),
    ("90^\\circ", "90"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
    ("[-1, 2) \\cup (3, \\infty)", "[-1,2)\\cup(3,\\infty)"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("2\\sqrt[3]{2}", "2^{4/3}"),
    ("\\dfrac{7}{2}", "3.5"),
    ("x^2 + 2x + 1", "(x+1)^2"),
    ("\\text{Evelyn}", "Evelyn"),
    ("\\{-1\\} \\cup [0, 7)", "\\{-1\\}\\cup[0,7)"),
    ("\\frac34i", "\\frac{3}{4}i"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\-2\\end{pmatrix}"),
    ("10\\%", "0.1"),
    ("\\tan^2 y + 1", "\\sec^2 y"),
    ("f(2) < f(1) < f(4)", "f(2)<f(1)<f(4)"),
    ("204_5", "204_{5}"),
)
_warmed = False


def warm() -> None:
    """Warm parser and sympy caches (idempotent); see ``_WARM_PAIRS``."""
    global _warmed
    if _warmed:
        return
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for gold, answer in _WARM_PAIRS:
        with contextlib.suppress(Exception):  # warming must never break a worker
            equivalent(gold, answer)
    _warmed = True


_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]*\.[0-9]+|[0-9]+\.[0-9]*")
_DECIMAL_COMMA = re.compile(r"0,[0-9]+")
_hardened = False


def _number_literal(text: str) -> Any:
    """A sympy number from a numeric literal without ``sympify`` (which ``eval``s strings)."""
    from sympy import Float, Integer

    digits = text.replace(" ", "")
    # 0,5 is a decimal comma (latex2sympy's rule): a thousands group never starts with 0.
    digits = digits.replace(",", "." if _DECIMAL_COMMA.fullmatch(digits) else "")
    if _INTEGER.fullmatch(digits):
        return Integer(int(digits))
    if _DECIMAL.fullmatch(digits):
        return Float(digits)
    raise ValueError(f"not a number literal: {text!r}")


def _harden_parser() -> None:
    """Route latex2sympy's number literals around ``sympy.Number(str)``.

    latex2sympy2_extended builds numbers with ``sympy.Number(text)``, which goes through
    ``sympify`` → ``parse_expr`` → ``eval``. Its lexer only lets digits through, but "no model
    text reaches eval" should not rest on a grammar detail, so both entry points are replaced
    (in the worker processes only) by :func:`_number_literal`, which accepts plain literals.
    """
    global _hardened
    if _hardened:
        return
    from latex2sympy2_extended import latex2sympy2 as l2s

    def parse_number(self: Any, text: str) -> Any:
        return _number_literal(text)

    def convert_number(number: str) -> Any:
        return _number_literal(number)

    # Patched only where present: a renamed internal in a future latex2sympy release must not
    # break every check (the test with eval made fatal would then flag the regression).
    converter = getattr(l2s, "_Latex2Sympy", None)
    if converter is not None and hasattr(converter, "parse_number"):
        converter.parse_number = parse_number
    if hasattr(l2s, "convert_number"):
        l2s.convert_number = convert_number
    _hardened = True


@lru_cache(maxsize=8192)
def _parse(text: str) -> tuple[Any, ...]:
    """math-verify parse of one answer string (LaTeX extraction only; never ``parse_expr``)."""
    from math_verify import LatexExtractionConfig, parse

    _harden_parser()
    if not text.strip():
        return ()
    # Wrapped in $...$ so that math-verify sees exactly one inline environment.
    return tuple(
        parse(
            "$" + text + "$",
            extraction_config=[LatexExtractionConfig(boxed_match_priority=-1)],
            parsing_timeout=None,  # type: ignore[arg-type]  # our own timers (see module doc)
        )
    )


def _numeric_value(expr: Any) -> float | None:
    """Float value of a closed numeric sympy expression, else ``None`` (symbols, sets, ...)."""
    from sympy import Basic, Expr

    if not isinstance(expr, Basic) or not isinstance(expr, Expr):
        return None
    try:
        if expr.free_symbols:
            return None
        value = complex(expr.doit().evalf(30))
    except (TypeError, ValueError, OverflowError, AttributeError, ZeroDivisionError):
        return None
    return value.real if value.imag == 0 else None


def _numerically_close(gold: Any, pred: Any) -> bool:
    """Guard applied after math-verify said "equal": tiny magnitudes need relative agreement."""
    from sympy import Basic, Float

    has_float = [isinstance(x, Basic) and x.has(Float) for x in (gold, pred)]
    if not any(has_float):  # exact values: math-verify compared them exactly
        return True
    g = _numeric_value(gold)
    p = _numeric_value(pred)
    if g is None or p is None or g == p:
        return True
    diff = abs(g - p)
    scale = max(abs(g), abs(p))
    if diff <= _REL_TOL * scale:
        return True
    return diff <= _ABS_TOL and scale >= _ABS_TOL_MIN_MAGNITUDE


def _verify(gold: tuple[Any, ...], pred: tuple[Any, ...]) -> bool:
    """math-verify's comparison over both parse candidates, with the numeric guard."""
    from math_verify import verify as mv_verify

    for g in gold:
        for p in pred:
            if mv_verify(g, p, timeout_seconds=None) and _numerically_close(g, p):  # type: ignore[arg-type]
                return True
    return False


def equivalent(gold: str, answer: str) -> bool:
    """Is ``answer`` equivalent to ``gold``? (Both already passed the size screens.)"""
    g_text, a_text = for_parser(gold), for_parser(answer)
    if canonical(g_text) == canonical(a_text):
        return True
    g, a = _parse(g_text), _parse(a_text)
    if _verify(g, a):
        return True
    g_bare, a_bare = _TRAILING_PERCENT.sub("", g_text), _TRAILING_PERCENT.sub("", a_text)
    # A percent sign on one side only: "62.5\%" is also read as the number 62.5 (math-verify
    # does this for integers only: 9\% = 9 but 62.5\% != 62.5); 0.625 keeps matching too.
    if (g_bare == g_text) != (a_bare == a_text) and _verify(_parse(g_bare), _parse(a_bare)):
        return True
    # "I_{\max} = v" against "v": the parser may reject or misread the left side (here as the
    # imaginary unit), so a name-like left side is dropped when the answer has none.
    m = _NAME_LHS.match(g_text)
    if m and "," not in g_text and "=" not in a_text:
        rhs = m.group(2)
        return canonical(rhs) == canonical(a_text) or _verify(_parse(rhs), a)
    return False


def _is_multi_valued(gold: str) -> bool:
    """Whether the gold parses to a finite set of several values (``1,-2``, ``\\pm 3``)."""
    from sympy import FiniteSet

    parsed = _parse(for_parser(gold))
    return any(isinstance(x, FiniteSet) and len(x) > 1 for x in parsed)


def judge(gold_parts: tuple[str, ...], answers: tuple[str, ...]) -> tuple[bool, str, str]:
    """Verdict for one screened pair: (correct, reason, extracted answer that was judged).

    ``gold_parts`` has several entries for list golds (all must match, order-free: they are
    joined and compared as a set); ``answers`` holds the distinct boxes, the final one last.
    The final box is the answer (a later box corrects an earlier one, as in every R1-style
    grader; ``docs/verifier.md``). Against a multi-valued gold the boxes may also list the
    answer together (``\\boxed{3}`` and ``\\boxed{5}`` for ``3, 5``).
    """
    gold = ", ".join(gold_parts)
    final = answers[-1]
    if equivalent(gold, final):
        return True, R.MATCH, final
    if len(answers) > 1 and (len(gold_parts) > 1 or _is_multi_valued(gold)):
        # An extra wrong value makes the list wrong.
        joined = ", ".join(answers)
        ok = equivalent(gold, joined)
        return ok, R.MATCH if ok else R.MISMATCH, joined
    return False, R.MISMATCH, final
