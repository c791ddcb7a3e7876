"""Where a sampled row ends: its first eos or stop string. Shared by every backend so finish
reasons, stop-string cuts and ``include_stop_str`` mean the same thing whichever engine sampled."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from oreal.rollout.base import FinishReason, SamplingParams

__all__ = ["finish_response"]


def finish_response(
    tokens: list[int],
    params: SamplingParams,
    eos_token_ids: Collection[int],
    decode: Callable[[Sequence[int]], str],
) -> tuple[list[int], str, FinishReason]:
    """Cut one row at its first eos or stop string; return ``(ids, text, reason)``.

    ``ids`` keep the eos token, or end with the token that completed the stop string; ``text``
    drops eos and (unless ``include_stop_str``) the stop string; ``reason`` is ``"length"``
    when neither occurred.
    """
    reason: FinishReason = "length"
    end = len(tokens)
    for pos, token in enumerate(tokens):
        if token in eos_token_ids:
            end, reason = pos + 1, "eos"
            break
    body = tokens[: end - 1] if reason == "eos" else tokens[:end]
    text = decode(body)
    if params.stop:
        hits = [(text.find(s), s) for s in params.stop if s in text]
        if hits:
            cut, stop = min(hits)
            # Fewest tokens whose text already contains a stop string (prefix-monotone).
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in decode(body[:mid]) for s in params.stop):
                    hi = mid
                else:
                    lo = mid + 1
            keep = cut + (len(stop) if params.include_stop_str else 0)
            return body[:lo], text[:keep], "stop"
    return tokens[:end], text, reason
