"""Answer extraction: what did the response commit to? Pure string work, no sympy.

``strict`` (training rewards) only trusts ``\\boxed{...}``: the policy is trained to box its final
answer, and everything else in a response is reasoning that must not be scored, otherwise the
policy learns to scatter candidate answers. ``lenient`` (evaluating models that were not trained
on the boxed format) falls back to "the answer is ...", "Final Answer: ...", ``#### N`` and the
last math expression or number.

Rules applied here, independent of the gold: no box (``no_answer``), empty or placeholder final
box (``empty``), negated box (``negated``). Rules that need the gold (hedges, several boxes
forming a list answer) are applied later from the flags and candidates this module records.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from oreal.verify import verdict as R
from oreal.verify.normalize import canonical, has_or_connective, multiple_choice_letter

MODES: tuple[str, ...] = ("strict", "lenient")

_BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_TOKEN = re.compile(r"[^\s$]+")  # the argument of ``\boxed 5`` (no braces)
_THINK_END = "</think>"
_FINAL_MARKERS = ("**Final Answer**", "<conclude>")
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_PLACEHOLDER_WORDS = frozenset(
    {
        "n/a",
        "na",
        "answer",
        "youranswer",
        "finalanswer",
        "theanswer",
        "answerhere",
        "insertanswer",
        "tbd",
        "blank",
        "placeholder",
        "\\ldots",
        "\\cdots",
        "\\dots",
    }
)
_PLACEHOLDER_PUNCT = re.compile(r"^[_.?…*\-–—]*$")
_NEG_BEFORE = re.compile(
    r"(?:\bnot|n['’]t|\bnever|\\neq?|≠)"
    r"(?:\s+(?:equal|equals|be|just|exactly|simply|necessarily|the\s+same))?"
    r"(?:\s+(?:to|as))?\s*[:=]?\s*$",
    re.IGNORECASE,
)
_NEG_AFTER = re.compile(
    r"^\s*(?:(?:is|was|are)\s+(?:not|wrong|incorrect|false)\b|(?:isn|wasn|aren)['’]t\b)",
    re.IGNORECASE,
)
_NEG_LEADING = re.compile(r"^(?:not|never|isn['’]t|is\s+not)\b|^\\neq?\b|^≠", re.IGNORECASE)
_OPEN_DELIMS = re.compile(r"(?:\$\$?|\\\(|\\\[|\\displaystyle|\s)+$")
_CLOSE_DELIMS = re.compile(r"^(?:\$\$?|\\\)|\\\]|[.,;]|\s)+")
_OR_BETWEEN = re.compile(
    r"^[\s$]*(?:\\\)|\\\]|\\quad|\\text\{\s*|\s)*or(?:\s*\}|\s|\\quad|\\\(|\\\[)*$"
)
_ANCHOR = re.compile(r"\b(?:final\s+answer|answer)\b\s*(?:\*\*)?\s*(?:is|:|=)\s*(?:\*\*)?", re.I)
_HASH = re.compile(r"####\s*([^\n]{1,200})")
_MATH_ENV = re.compile(
    r"\$\$(.{1,2000}?)\$\$|\\\[(.{1,2000}?)\\\]|\\\((.{1,2000}?)\\\)"
    r"|(?<![\\$])\$((?:[^$\n\\]|\\[^\n]){1,500}?)\$",
    re.DOTALL,
)
_LAST_NUMBER = re.compile(
    r"(?<![\w.])-?(?:[0-9]{1,3}(?:(?:,[0-9]{3})+|(?: [0-9]{3})+)(?:\.[0-9]+)?"
    r"|[0-9]+(?:[.,][0-9]+)?(?:\s*/\s*[0-9]+)?|\.[0-9]+)"
    r"(?![0-9])(\s*(?:\\?%|percent))?",
    re.IGNORECASE,
)
# An undelimited fraction or root (``\frac{10}{9}``): one expression, not the numbers 10 and 9.
_BRACED = r"\{(?:[^{}]|\{[^{}]*\})*\}"
_BARE_LATEX = re.compile(
    rf"-?\\(?:[dt]?frac\s*(?:{_BRACED}|[0-9])\s*(?:{_BRACED}|[0-9])|sqrt\s*(?:\[[^\]]*\])?\s*{_BRACED})"
)
_LIST_GAP = re.compile(r"^\s*(?:,|;|\\?&|,?\s*\band\b)\s*$", re.IGNORECASE)
_PROSE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}\s+[a-zA-Z]{2,}")
_IS_SPLIT = re.compile(r"\s(?:is|are|was|equals|=)\s", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\bI hope\b|\n")
_TAIL = 4_000


def check_mode(mode: str) -> str:
    """Validate a mode name; a typo must not silently change how rewards are computed."""
    if mode not in MODES:
        raise ValueError(f"unknown verifier mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True, slots=True)
class Box:
    """One ``\\boxed{...}``: its span in the scanned text and its content."""

    start: int
    end: int
    content: str


@dataclass(frozen=True, slots=True)
class Extraction:
    """What a response committed to, before any comparison with the gold.

    ``answers`` holds the distinct final-answer candidates in order (several only when several
    boxes disagree as strings); ``reason`` is set when a gold-independent rule already decided
    the verdict; ``or_hedge`` records alternatives joined by "or" for the gold-aware hedge rule.
    """

    answers: tuple[str, ...]
    reason: str | None = None
    source: str = "none"
    or_hedge: bool = False

    @property
    def extracted(self) -> str | None:
        """The final answer string (last candidate), or ``None``."""
        return self.answers[-1] if self.answers else None


def _box_content_end(text: str, open_brace: int) -> int | None:
    """Index of the ``}`` closing the group at ``open_brace``; escapes skipped; ``None`` if open."""
    depth = 0
    i = open_brace
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def find_boxes(text: str) -> list[Box]:
    """All complete, non-nested boxes, in order (``\\boxed{..}``, ``\\fbox{..}``, ``\\boxed 5``).

    Braces are balanced by a linear scan (regexes cannot), escaped braces ``\\{``/``\\}`` are
    skipped, an unterminated box (truncated output) is ignored, and a box nested in another box
    is unwrapped rather than counted twice.
    """
    boxes: list[Box] = []
    pos = 0
    while True:
        m = _BOX_CMD.search(text, pos)
        if m is None:
            return boxes
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            close = _box_content_end(text, i)
            if close is None:
                return boxes
            content, end = text[i + 1 : close], close + 1
        elif i > m.end():
            token = _TOKEN.match(text, i)
            if token is None:
                pos = i
                continue
            content, end = token.group(), token.end()
        else:
            pos = m.end()
            continue
        boxes.append(Box(m.start(), end, _unwrap_nested(content)))
        pos = end


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` → index of its ``}`` (escapes skipped), in one linear pass."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _unwrap_nested(content: str) -> str:
    """``\\boxed{\\boxed{5}}`` → ``5``: peel boxes that cover the whole content, at any depth.

    A loop over one brace-matching pass, not a recursion: a response with a thousand nested
    boxes must not raise ``RecursionError`` (or take quadratic time).
    """
    inner = content.strip()
    if _BOX_CMD.match(inner) is None:
        return inner
    closes = _matching_braces(inner)
    start, end = 0, len(inner)
    while (m := _BOX_CMD.match(inner, start, end)) is not None:
        i = m.end()
        while i < end and inner[i] in " \t":
            i += 1
        if i < end and inner[i] == "{":
            if closes.get(i) != end - 1:
                break
            start, end = i + 1, end - 1
        elif i > m.end() and (token := _TOKEN.match(inner, i, end)) and token.end() == end:
            start = i
        else:
            break
        while start < end and inner[start].isspace():
            start += 1
        while end > start and inner[end - 1].isspace():
            end -= 1
    return inner[start:end]


def answer_region(text: str) -> str:
    """The part of a response that may hold the final answer: after the last ``</think>``."""
    cut = text.rfind(_THINK_END)
    return text[cut + len(_THINK_END) :] if cut >= 0 else text


def is_placeholder(content: str) -> bool:
    """``\\boxed{}``, ``?``, ``N/A``, ``\\text{answer}``, ``\\ldots``, ``___``: no answer given."""
    key = _TEXT_WRAPPERS.sub(r"\1", content).replace("\\_", "_")
    key = re.sub(r"[\s${}~]|\\[,;:! ]", "", key).lower()
    return not key or key in _PLACEHOLDER_WORDS or bool(_PLACEHOLDER_PUNCT.match(key))


def _negated(region: str, box: Box) -> bool:
    """ "is not \\boxed{70}", "\\neq \\boxed{70}", "\\boxed{70} is wrong"."""
    before = _OPEN_DELIMS.sub("", region[max(0, box.start - 80) : box.start])
    after = _CLOSE_DELIMS.sub("", region[box.end : box.end + 60], count=1)
    return bool(_NEG_BEFORE.search(before) or _NEG_AFTER.match(after))


def _distinct(contents: list[str]) -> tuple[str, ...]:
    """Distinct answers by canonical form, ordered by last occurrence (final answer last)."""
    last: dict[str, str] = {}
    for content in contents:
        key = canonical(content)
        last.pop(key, None)
        last[key] = content
    return tuple(last.values())


def _from_boxes(region: str, boxes: list[Box]) -> Extraction:
    """Apply the box rules: final placeholder → empty, any negation → negated, "or" → hedge."""
    for marker in _FINAL_MARKERS:
        cut = region.rfind(marker)
        if cut >= 0 and any(b.start > cut for b in boxes):
            boxes = [b for b in boxes if b.start > cut]
    if is_placeholder(boxes[-1].content):
        return Extraction((), R.EMPTY, "boxed")
    real = [b for b in boxes if not is_placeholder(b.content)]
    for box in real:
        if _negated(region, box):
            return Extraction((box.content,), R.NEGATED, "boxed")
    or_hedge = any(has_or_connective(b.content) for b in real) or any(
        _OR_BETWEEN.match(region[a.end : b.start]) for a, b in itertools.pairwise(real)
    )
    return Extraction(_distinct([b.content for b in real]), None, "boxed", or_hedge)


def _last(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    """Last match of an iterator (regexes have no reverse search)."""
    last = None
    for last in matches:  # noqa: B007
        pass
    return last


def _env_list(text: str) -> str | None:
    """``$12$ and $13$``, ``$1$, $2$``: several math environments joined only by commas or "and"
    are one list answer (``12, 13``), not their last item."""
    envs = list(_MATH_ENV.finditer(text))
    if len(envs) < 2:
        return None
    if any(not _LIST_GAP.match(text[a.end() : b.start()]) for a, b in itertools.pairwise(envs)):
        return None
    if re.search(r"\w", text[: envs[0].start()] + text[envs[-1].end() :]):
        return None
    return ", ".join(next(g for g in m.groups() if g is not None).strip() for m in envs)


def _strip_env(text: str) -> str:
    """Content of the last math environment in ``text`` if there is one, else ``text``."""
    envs = list(_MATH_ENV.finditer(text))
    if envs:
        m = envs[-1]
        return next(g for g in m.groups() if g is not None).strip()
    return text.strip()


def _last_math_or_number(text: str) -> str | None:
    """Whichever of the last math environment, the last undelimited fraction or root and the last
    number ends later (on a tie the environment, then the fraction: they contain the number)."""
    env = _last(_MATH_ENV.finditer(text))
    bare = _last(_BARE_LATEX.finditer(_MATH_ENV.sub(lambda m: " " * len(m.group()), text)))
    num = _last(_LAST_NUMBER.finditer(text))
    ends = [m.end() if m is not None else -1 for m in (env, bare, num)]
    if env is not None and ends[0] >= max(ends):
        content = next(g for g in env.groups() if g is not None).strip()
        if re.match(r"\s*(?:\\?%|percent)", text[env.end() : env.end() + 12], re.I):
            content += "\\%"
        return content or None
    if bare is not None and ends[1] >= ends[2]:
        return bare.group()
    if num is not None:
        value = num.group()[: num.start(1) - num.start()] if num.group(1) else num.group()
        value = re.sub(r"^(-?[0-9]+),([0-9]{1,2})$", r"\1.\2", value)  # 2,74 -> 2.74
        return value + ("\\%" if num.group(1) else "")
    return None


def _from_phrase(segment: str) -> Extraction:
    """Answer from the text after an anchor such as "the answer is" or "Final Answer:"."""
    segment = segment.strip().strip("*:").strip()
    if _NEG_LEADING.match(segment):
        return Extraction((_strip_env(segment),), R.NEGATED, "phrase")
    if _PROSE.search(_MATH_ENV.sub(" ", segment)):
        pieces = _IS_SPLIT.split(segment)
        piece = pieces[-1] if len(pieces) > 1 else None
        if piece is not None and _NEG_LEADING.match(piece.strip()):
            return Extraction((_strip_env(piece),), R.NEGATED, "phrase")
        if piece is None or _PROSE.search(_MATH_ENV.sub(" ", piece)):
            answer = _last_math_or_number(segment)
        else:
            answer = _strip_env(piece).rstrip(".")
    else:
        answer = _env_list(segment) or _strip_env(segment).rstrip(".").strip()
    if not answer:
        return Extraction(())
    return Extraction((answer,), None, "phrase", has_or_connective(answer))


def _mathy(answer: str) -> bool:
    """Digits, LaTeX or a choice letter: enough to override an earlier box in lenient mode."""
    return bool(re.search(r"[0-9\\]", answer)) or multiple_choice_letter(answer) is not None


def _lenient(region: str, boxes: list[Box]) -> Extraction:
    """Boxes first, unless a "final answer" phrase comes after the last box; then fallbacks."""
    tail_start = max(0, len(region) - _TAIL)
    tail = region[tail_start:]
    anchor = _last(_ANCHOR.finditer(tail))
    if boxes and (anchor is None or tail_start + anchor.end() < boxes[-1].end):
        return _from_boxes(region, boxes)
    if anchor is not None:
        rest = tail[anchor.end() : anchor.end() + 600]
        display = re.match(r"\s*(\$\$.*?\$\$|\\\[.*?\\\])", rest, re.DOTALL)
        if display:
            segment = display.group(1)
        else:
            stop = _SENTENCE_END.search(rest)
            segment = rest[: stop.start()] if stop else rest
        found = _from_phrase(segment)
        if found.answers and (not boxes or _mathy(found.answers[-1])):
            return found
        if boxes:  # "...so our answer is correct." after the box is not a new answer
            return _from_boxes(region, boxes)
    hashes = list(_HASH.finditer(tail))
    if hashes:
        answer = _last_math_or_number(hashes[-1].group(1))
        if answer:
            return Extraction((answer,), None, "hash")
    answer = _last_math_or_number(tail)
    if answer:
        return Extraction((answer,), None, "last")
    return Extraction((), R.NO_ANSWER)


def extract(response: str, mode: str = "strict") -> Extraction:
    """Full extraction with rule flags (see :class:`Extraction`); ``mode`` must be valid."""
    check_mode(mode)
    region = answer_region(response)
    boxes = find_boxes(region)
    if mode == "lenient":
        return _lenient(region, boxes)
    if not boxes:
        return Extraction((), R.NO_ANSWER)
    return _from_boxes(region, boxes)


def extract_answer(response: str, mode: str = "strict") -> str | None:
    """The final answer a response commits to, or ``None``; cheap and pure (no sympy).

    ``None`` when there is none to judge: no box (strict) or nothing answer-like (lenient), an
    empty or placeholder box, or a negated answer. Gold-dependent rules (hedges, boxes that list
    a multi-valued answer together) are not applied here; with several boxes the last one is
    returned, as it is the one judged.
    """
    found = extract(response, mode)
    if found.reason is not None:
        return None
    return found.extracted
