"""What the adapters share: reading completions and golds in the peers' shapes, and verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oreal.verify import Verdict, Verifier, verify_batch


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or a conversation (TRL's conversational format,
    ``[{"role": "assistant", "content": ...}]``), whose last assistant message is the answer.
    Content given as parts (``[{"type": "text", "text": ...}]``) is joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence):  # no assistant message: nothing was answered
        messages = [m for m in completion if isinstance(m, dict)]
        replies = [m for m in messages if m.get("role", "assistant") == "assistant"]
        return _content_text(replies[-1].get("content")) if replies else ""
    raise TypeError(
        f"a completion must be a string or a list of chat messages, got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def gold_value(gold: Any) -> str | list[Any]:
    """A gold in the forms frameworks store it: a string, a number, a list or a numpy array
    (parquet columns); ``None`` is an empty gold (``invalid_gold``, never correct)."""
    if gold is None:
        return ""
    if hasattr(gold, "tolist") and not isinstance(gold, str | int | float):
        gold = gold.tolist()  # numpy arrays and scalars
    if isinstance(gold, tuple):
        gold = list(gold)
    return gold


def judge(
    golds: Sequence[Any],
    responses: Sequence[str],
    *,
    mode: str,
    timeout: float,
    verifier: Verifier | None,
) -> list[Verdict]:
    """Verdicts on the given verifier, or on the process-wide shared one."""
    gold_values = [gold_value(g) for g in golds]
    if verifier is not None:
        return verifier.verify_batch(gold_values, list(responses))
    return verify_batch(gold_values, list(responses), mode=mode, timeout=timeout)


def reward(verdict: Verdict) -> float:
    """1.0 for a correct answer, else 0.0: the outcome reward."""
    return 1.0 if verdict.correct else 0.0
