"""A second reward term, written as a plain function: TRL-style keyword arguments, one float
per completion. Use it next to the verifier with a method that learns from reward values:

    oreal train demo_grpo \
        'reward.functions=[verifier, {function: examples/length_penalty.py:length_penalty}]'

Each term is logged on its own (``reward/verifier``, ``reward/length_penalty``).
"""

from __future__ import annotations

from collections.abc import Sequence


def length_penalty(
    completion_ids: Sequence[Sequence[int]], truncated: Sequence[bool], **kwargs: object
) -> list[float]:
    """-0.002 per response token, -0.1 more for a response cut at the length budget."""
    pairs = zip(completion_ids, truncated, strict=True)
    return [-0.002 * len(ids) - (0.1 if cut else 0.0) for ids, cut in pairs]
