"""Answer groups for voting, exactly as ``oreal eval``'s maj@k forms them.

Each solution votes with its extracted final answer (none if it was truncated or has no answer);
answers join the earliest group whose first member they match: equal
:func:`~oreal.eval.metrics.normalize_answer` spellings, else the verifier's answer-vs-answer
equivalence (:func:`~oreal.eval.metrics.assign_groups`). The comparisons of a whole batch of
problems are prefetched in one ``equivalent_batch`` call. Unlike maj@k in ``oreal eval``, no
verdict against the gold is used: search must not see the gold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oreal.eval.metrics import assign_groups, normalize_answer

__all__ = ["extract_votes", "group_answers"]


def extract_votes(
    texts: Sequence[str], truncated: Sequence[bool], mode: str = "strict"
) -> list[str | None]:
    """Each solution's vote: its extracted final answer, ``None`` if truncated or absent."""
    from oreal.verify import extract_answer

    return [
        None if cut else (extract_answer(text, mode) or None)
        for text, cut in zip(texts, truncated, strict=True)
    ]


def group_answers(
    answer_lists: Sequence[Sequence[str | None]], verifier: Any
) -> list[list[int | None]]:
    """Vote groups for each list of answers; ``verifier`` None compares spellings only."""
    distinct_lists = []
    for answers in answer_lists:
        seen: dict[str, str] = {}
        for answer in answers:
            if answer is not None and answer.strip():
                seen.setdefault(normalize_answer(answer), answer)
        distinct_lists.append(list(seen.items()))
    cache: dict[tuple[str, str], bool] = {}
    if verifier is not None:
        pairs = {
            (a[0], b[0]): (a[1], b[1])
            for items in distinct_lists
            for i, a in enumerate(items)
            for b in items[i + 1 :]
        }
        keys = list(pairs)
        verdicts = verifier.equivalent_batch([pairs[k] for k in keys]) if keys else []
        for key, same in zip(keys, verdicts, strict=True):
            cache[key] = bool(same)

    def equivalent(a: str, b: str) -> bool:
        na, nb = normalize_answer(a), normalize_answer(b)
        if na == nb:
            return True
        if (na, nb) in cache:
            return cache[(na, nb)]
        if (nb, na) in cache:
            return cache[(nb, na)]
        if verifier is None:
            return False
        cache[(na, nb)] = bool(verifier.equivalent(a, b))
        return cache[(na, nb)]

    return [assign_groups(list(answers), equivalent) for answers in answer_lists]
