"""Solutions as lists of steps: the unit that process reward models score and search extends.

A step is the text between two step separators; the default separator "\\n\\n" is the split that
Qwen recommends for Qwen2.5-Math-PRM (algorithms.md §5.1) and the one the particle-filtering code
stops generation at (Puri et al., arXiv 2502.01618, §3; algorithms.md §6.1). A partial solution
is always the steps so far joined by the separator, followed by one more separator: that is the
text the policy generated, since every step but the last ends at the separator.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "FINAL_ANSWER_MARKER",
    "STEP_SEPARATOR",
    "has_final_answer",
    "join_steps",
    "split_steps",
]

STEP_SEPARATOR = "\n\n"
#: A step containing this ends the solution (the original particle-filtering code and its_hub stop
#: a particle at its first step with a boxed answer).
FINAL_ANSWER_MARKER = "\\boxed"


def split_steps(text: str, separator: str = STEP_SEPARATOR) -> list[str]:
    """The steps of a full response: ``text`` split on ``separator``, blank pieces dropped.

    Blank pieces (runs of blank lines, a trailing separator) carry nothing a PRM could judge and
    would otherwise put two step tags side by side. A response with no content is one empty step,
    so every response has at least one score.

    >>> split_steps("First, 3 + 4 = 7.\\n\\nSo the answer is \\\\boxed{7}.\\n\\n")
    ['First, 3 + 4 = 7.', 'So the answer is \\\\boxed{7}.']
    """
    if not separator:
        raise ValueError("the step separator must be non-empty")
    steps = [piece for piece in text.split(separator) if piece.strip()]
    return steps or [""]


def join_steps(steps: Sequence[str], separator: str = STEP_SEPARATOR, *, partial: bool) -> str:
    """The response text of ``steps``; a ``partial`` one ends with the separator it stopped at."""
    text = separator.join(steps)
    return text + separator if partial and steps else text


def has_final_answer(step: str) -> bool:
    """Does this step give the final answer (contain ``\\boxed``)?"""
    return FINAL_ANSWER_MARKER in step
