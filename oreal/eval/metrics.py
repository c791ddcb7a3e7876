"""Evaluation metrics: the unbiased pass@k estimator and majority voting (maj@k).

Both are pure functions of per-sample outcomes, so they can be tested against brute force and
reused by the trainer's periodic evaluation without a model in sight.

* pass@k (Chen et al., 2021, arXiv 2107.03374): with ``n`` samples of which ``c`` are correct,
  ``1 - C(n-c, k) / C(n, k)``, the probability that at least one of ``k`` samples drawn without
  replacement from the ``n`` is correct. Binomials overflow floats for large ``n``; the product
  form ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` is exact in exact arithmetic and stable in floats.
* maj@k (self-consistency; Wang et al., 2022, arXiv 2203.11171): vote among the extracted answers
  of the first ``k`` samples, grouping answers that are equivalent, and score the winning answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = [
    "assign_groups",
    "majority_vote",
    "normalize_answer",
    "pass_at_k",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct.

    Equals 1 when ``n - c < k`` (every k-subset holds a correct sample) and ``c / n`` for
    ``k = 1``. Raises ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``: an estimate of
    pass@k from fewer than k samples does not exist, and silently clamping would mislabel it.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


_LATEX_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\s+|\$")


def normalize_answer(answer: str) -> str:
    r"""A cheap canonical spelling used before asking the verifier whether two answers agree.

    Only changes that never alter the meaning: whitespace, ``$``, ``\left``/``\right``, thin
    spaces, ``\dfrac``/``\tfrac`` -> ``\frac``, ``^\circ`` markers and a trailing period. Equal
    normalised strings are one vote without a (slower) symbolic comparison.
    """
    text = _LATEX_NOISE.sub("", answer)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "")
    return text.rstrip(".")


def assign_groups(
    answers: Sequence[str | None],
    equivalent: Callable[[str, str], bool],
    correct: Sequence[bool] | None = None,
) -> list[int | None]:
    """Put each sample's extracted answer into a vote group; ``None`` for samples without one.

    Samples are taken in order; a sample joins the earliest-created group whose *first* member
    (the representative) it matches, or starts a new group. Matching is: equal
    :func:`normalize_answer` spellings, else ``equivalent(representative, answer)``. Because a
    sample's group depends only on earlier samples, the groups of the first ``k`` samples are the
    prefix of these groups, so one pass serves every maj@k.

    With ``correct`` (the verifier's verdict of each sample against the gold answer) the
    verdicts are used as known equivalences: two correct answers both equal the gold and so
    each other (one group, no comparison needed), and a correct answer is never equivalent to an
    incorrect one. Only incorrect answers are compared with ``equivalent``, which saves most of
    the calls and guarantees every member of a group has the same verdict.
    """
    if correct is not None and len(correct) != len(answers):
        raise ValueError("answers and correct must have the same length")
    groups: list[int | None] = []
    representatives: list[tuple[str, str, bool | None]] = []  # (answer, normalised, verdict)
    for index, answer in enumerate(answers):
        if answer is None or not answer.strip():
            groups.append(None)
            continue
        verdict = None if correct is None else bool(correct[index])
        normal = normalize_answer(answer)
        chosen: int | None = None
        for group, (rep, rep_normal, rep_verdict) in enumerate(representatives):
            if verdict is not None and rep_verdict != verdict:
                continue
            if verdict is True or rep_normal == normal or equivalent(rep, answer):
                chosen = group
                break
        if chosen is None:
            chosen = len(representatives)
            representatives.append((answer, normal, verdict))
        groups.append(chosen)
    return groups


def majority_vote(groups: Sequence[int | None], k: int | None = None) -> int | None:
    """Index of the sample that represents the winning group among the first ``k`` samples.

    The winner is the group with the most votes; a tie goes to the group whose earliest member
    comes first (group ids from :func:`assign_groups` are in order of first appearance, so this
    is the smallest id). The returned index is that earliest member. Samples without an answer
    (``None``) cast no vote; ``None`` is returned when no sample voted, which counts as wrong.
    """
    window = list(groups if k is None else groups[:k])
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for index, group in enumerate(window):
        if group is None:
            continue
        counts[group] = counts.get(group, 0) + 1
        first.setdefault(group, index)
    if not counts:
        return None
    winner = min(counts, key=lambda group: (-counts[group], first[group]))
    return first[winner]
