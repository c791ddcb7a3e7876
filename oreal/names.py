"""Choosing a name from a list, with the closest valid one in the error: the one typo helper.

Every user-facing name (algorithm, estimator, aggregation, config key, benchmark, template, ...)
is checked here, so a typo gets the same kind of hint everywhere: the closest valid name by
``difflib`` similarity (case-insensitive), or the list of valid names when nothing is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["choose", "closest_name", "unknown_name_message"]

#: How similar a name must be to be suggested (difflib ratio): "grop" -> "grpo",
#: "reinforce_reject" -> "reinforce_rej", but not "xyz" -> anything.
CUTOFF = 0.5


def closest_name(name: str, options: Iterable[str]) -> str | None:
    """The option closest to ``name`` (case-insensitive), or None when nothing is close."""
    by_lower = {option.lower(): option for option in options}
    lowered = str(name).lower()
    if lowered in by_lower:
        return by_lower[lowered]
    close = difflib.get_close_matches(lowered, list(by_lower), n=1, cutoff=CUTOFF)
    return by_lower[close[0]] if close else None


def unknown_name_message(name: str, options: Iterable[str], what: str) -> str:
    """``unknown <what> 'x'. Did you mean 'y'? Valid: a, b, c`` (the hint only when close)."""
    options = list(options)
    close = closest_name(name, options)
    hint = f" Did you mean {close!r}?" if close is not None else ""
    return f"unknown {what} {name!r}.{hint} Valid: {', '.join(options)}"


def choose(name: str, options: Iterable[str], what: str) -> str:
    """Return ``name`` if it is one of ``options``, else raise ``ValueError`` with a hint."""
    options = list(options)
    if name in options:
        return name
    raise ValueError(unknown_name_message(name, options, what))
