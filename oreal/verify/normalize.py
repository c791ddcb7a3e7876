"""String normalisation of answers and golds (no sympy).

Two products:

* :func:`canonical` — a conservative canonical string used for the fast path: when the canonical
  forms of the extracted answer and the gold are equal, the pair is equivalent and sympy is
  skipped (this is the common case on reference solutions and on well-trained policies). Every
  rewrite here is meaning-preserving (spacing, ``\\dfrac`` → ``\\frac``, thousands separators,
  leading zeros, ``70.0`` → ``70``, ``(B)`` → ``B``...), so a false positive cannot come from
  this path.
* :func:`for_parser` — the light clean-up applied before handing a string to math-verify, fixing
  notations its parser rejects (thin-space thousands ``1 000``, ``{,}`` separators, commands
  inside subscripts such as ``I_{\\max}``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_TEXT_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
_SPACING = re.compile(r"\\[,;:!> ]|\\q?quad\b|~|\\displaystyle\b|\\limits\b")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])\s*")
_FRAC = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_LE = re.compile(r"\\le(?:q|qslant)?(?![a-zA-Z])|<=")
_GE = re.compile(r"\\ge(?:q|qslant)?(?![a-zA-Z])|>=")
_NE = re.compile(r"\\ne(?:q)?(?![a-zA-Z])|!=")
_SUBSCRIPT = re.compile(r"_\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_SUB_COMMAND = re.compile(r"\\(?:mathrm|text|rm|mathit)\s*\{([^{}]*)\}|\\([a-zA-Z]+)")
_WS = re.compile(r"\s+")
_SPACE_NEAR_SYMBOL = re.compile(r" ?([^\w\s]) ?")
# Thousands groups need a leading group without a leading zero: ``0,111`` is a decimal comma
# (0.111, the parser's rule), never 111.
_NUMBER = re.compile(
    r"[+-]?(?:[1-9]\d{0,2}(?:(?:\{,\}|,\\!\s?|\\[,! ]|,| )\d{3})+|\d+)?(?:\.\d+)?\.?$",
)
_BARE_PERCENT = re.compile(r"(?<!\\)%")
_LEADING_APPROX = re.compile(r"^(?:\\(?:approx|simeq)(?![a-zA-Z])|≈)\s*")
# 1.5e-3, 3E8: scientific e-notation, rewritten as a power of ten for the LaTeX parser (which
# would read ``1.5e-3`` as 1.5 times Euler's e minus 3).
_E_NOTATION = re.compile(r"(?<![\w.\\{])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\w.])")
# A list whose last items are joined by "and": "1, 2, and 3", "6, 8\text{, and }10".
_TRAILING_PERIOD = re.compile(r"(?<!\.)\.\s*$")  # "2/3." ends a sentence; "1, 2, ..." is kept
_AND_JOIN = re.compile(r"\s*,?\s*(?:\\text\s*\{\s*,?\s*and\s*\}|\band\b)\s*,?\s*")
_SEPARATORS = re.compile(r"\{,\}|,\\!|\\[,! ]|[, ]")
_MC_LETTER = re.compile(r"^\(?([A-Ea-e])\)?$")
_CONNECTIVE = re.compile(r"\\text\{\s*(and|or)\s*\}|\b(and|or)\b", re.IGNORECASE)
_MIXED_NUMBER = re.compile(r"^(-?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$")


def strip_math_delimiters(text: str) -> str:
    """Remove ``$``/``$$``, ``\\(..\\)`` and ``\\[..\\]`` delimiters (benchmarks wrap golds)."""
    text = text.strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right):
            text = text[len(left) : -len(right)]
    return _UNESCAPED_DOLLAR.sub("", text).strip()


def _fix_subscripts(text: str) -> str:
    """``I_{\\max}`` → ``I_{max}``, ``k_{\\mathrm{B}}`` → ``k_{B}``: unparsable there."""

    def repl(m: re.Match[str]) -> str:
        inner = _SUB_COMMAND.sub(lambda k: k.group(1) or k.group(2), m.group(1))
        return "_{" + inner.replace(" ", "") + "}"

    return _SUBSCRIPT.sub(repl, text) if "_{" in text else text


def _canonical_number(text: str) -> str | None:
    """Canonical decimal string of a plain number (``+033`` → ``33``, ``1,000.50`` → ``1000.5``)."""
    if not text or not _NUMBER.match(text) or not any(c.isdigit() for c in text):
        return None
    digits = _SEPARATORS.sub("", text).rstrip(".")
    if len(digits) > 400:
        return None
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None
    if value == 0:
        return "0"
    out = format(value.normalize(), "f")
    return out


def multiple_choice_letter(text: str) -> str | None:
    """``(B)``, ``B``, ``\\text{(B)}``, ``\\textbf{B}`` → ``B``; anything else → ``None``."""
    inner = _TEXT_WRAPPERS.sub(r"\1", text).replace("$", "").strip().rstrip(".")
    m = _MC_LETTER.match(inner)
    return m.group(1).upper() if m else None


def canonical(text: str) -> str:
    """Meaning-preserving canonical form used by the fast path (see module docstring)."""
    s = strip_math_delimiters(text).replace("\\$", "")
    letter = multiple_choice_letter(s)
    if letter is not None:
        return letter
    number = _canonical_number(s)
    if number is not None:
        return number
    s = _TEXT_WRAPPERS.sub(r"\1", s)
    s = _SPACING.sub(" ", s)
    s = _LEFT_RIGHT.sub("", s)
    s = _FRAC.sub(r"\\frac", s)
    s = _LE.sub(r"\\leq ", s)
    s = _GE.sub(r"\\geq ", s)
    s = _NE.sub(r"\\neq ", s)
    s = s.replace("\\%", "%").replace("^{\\circ}", "^\\circ")  # a bare % is kept as is
    s = _fix_subscripts(s)
    s = _WS.sub(" ", s).strip()
    number = _canonical_number(s)
    if number is not None:
        return number
    s = _SPACE_NEAR_SYMBOL.sub(r"\1", s)
    return s.rstrip(".").strip()


def for_parser(text: str) -> str:
    """Clean-up before math-verify parses ``text`` (formats its parser does not understand).

    Besides the notations of the module docstring: a leading ``\\approx`` (a gold given as
    "≈ 8.24 mph" means the value), a bare ``%`` (``62.5%``: in LaTeX it would start a comment),
    scientific e-notation (``1.5e-3``), lists joined by "and" (``6, 8\\text{, and }10``) and a
    sentence's full stop (``2/3.``).
    """
    s = strip_math_delimiters(text).replace("\\$", "").replace("\n", " ")
    s = _LEADING_APPROX.sub("", s.strip())
    s = _BARE_PERCENT.sub(r"\\%", s)
    s = _E_NOTATION.sub(r"\1\\times10^{\2}", s)
    s = _AND_JOIN.sub(", ", s).strip(" ,")
    s = _TRAILING_PERIOD.sub("", s)
    s = _fix_subscripts(s)
    number = _canonical_number(_WS.sub(" ", s).strip())
    if number is not None:
        return number
    m = _MIXED_NUMBER.match(s.strip())
    if m:  # 15\frac{39}{40} is a mixed number in MATH, not 15 * 39/40
        sign, whole, num, den = m.groups()
        return f"{sign}\\frac{{{int(whole) * int(den) + int(num)}}}{{{den}}}"
    return s.strip()


def gold_parts(gold: str | Sequence[str]) -> tuple[str, ...]:
    """Gold as a tuple of answer strings (OlympiadBench gives lists of ``$...$`` answers).

    Numbers are accepted (GSM8K-style integer golds) and written as strings.
    """
    if isinstance(gold, bool):
        raise TypeError("gold must be a string or a list of strings, got bool")
    if isinstance(gold, str | int | float):
        return (strip_math_delimiters(str(gold)),)
    if not isinstance(gold, Sequence) or not all(isinstance(g, str | int | float) for g in gold):
        raise TypeError(f"gold must be a string or a list of strings, got {gold!r:.80}")
    return tuple(strip_math_delimiters(str(g)) for g in gold)


def split_top_level(text: str) -> list[str]:
    """Split at commas/semicolons that are outside every bracket (``\\{``/``\\}`` count too)."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth = max(depth - 1, 0)
        elif ch in ",;" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def looks_multi(text: str) -> bool:
    """Cheap guess whether an answer lists several values (``1, 2``, ``a \\text{ and } b``, ``±``).

    Used by the hedge rule: "3 or 5" is a hedge against a single-valued gold, but not against a
    gold that itself lists alternatives.
    """
    s = strip_math_delimiters(text)
    if "\\pm" in s or "\\mp" in s or "±" in s:
        return True
    if len(split_top_level(s)) > 1:
        return True
    if s.startswith("\\{") and "," in s:
        return True
    return bool(_CONNECTIVE.search(s))


def has_or_connective(text: str) -> bool:
    """True when alternatives are joined by "or" (``3 \\text{ or } 5``, ``(A) or (C)``)."""
    return any((m.group(1) or m.group(2) or "").lower() == "or" for m in _CONNECTIVE.finditer(text))


def option_letters(text: str) -> list[str]:
    """The multiple-choice letters listed in ``text`` (``(A), (C)`` → ``[A, C]``), else ``[]``."""
    s = _TEXT_WRAPPERS.sub(r"\1", strip_math_delimiters(text))
    pieces = re.split(r",|;|/|\band\b|\bor\b|&|\s+", s, flags=re.IGNORECASE)
    letters = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        letter = multiple_choice_letter(piece)
        if letter is None:
            return []
        letters.append(letter)
    return letters
