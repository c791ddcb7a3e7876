"""oreal's verifier as verl's ``custom_reward_function``.

verl loads the function by file path and name, and passes ``custom_reward_function.reward_kwargs``
as extra keyword arguments::

    REWARD_FILE=$(python -c "import oreal.integrations.verl as m; print(m.__file__)")
    custom_reward_function.path=$REWARD_FILE
    custom_reward_function.name=compute_score
    +custom_reward_function.reward_kwargs.mode=strict      # optional: strict | lenient

``compute_score(data_source, solution_str, ground_truth, extra_info=None)`` is what the
``naive`` and ``dapo`` reward managers call once per sample; ``compute_score_batch`` takes the
lists the ``batch`` manager passes (``data_sources``, ``solution_strs``, ``ground_truths``,
``extra_infos``) and checks them as one batch. Both return verl's dict form: ``score`` (1.0 or
0.0) is the reward; ``acc`` (bool), ``pred`` (the extracted answer, ``""`` if none) and
``reason`` (the verdict's reason code) are logged by verl as extra reward info (strings are
skipped by its metrics, and ``pred`` feeds its majority-vote metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oreal.integrations._common import judge, reward
from oreal.verify import Verdict


def _as_dict(verdict: Verdict) -> dict[str, Any]:
    return {
        "score": reward(verdict),
        "acc": verdict.correct,
        "pred": verdict.extracted or "",
        "reason": verdict.reason,
    }


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    mode: str = "strict",
    timeout: float = 5.0,
    **reward_kwargs: Any,
) -> dict[str, Any]:
    """Score one response against its ground truth (every ``data_source`` alike)."""
    return compute_score_batch(
        [data_source], [solution_str], [ground_truth], [extra_info], mode=mode, timeout=timeout
    )[0]


def compute_score_batch(
    data_sources: Sequence[str | None],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict[str, Any] | None] | None = None,
    *,
    mode: str = "strict",
    timeout: float = 5.0,
    **reward_kwargs: Any,
) -> list[dict[str, Any]]:
    """Score a batch (verl's ``batch`` reward manager): one verifier call for all responses."""
    if len(solution_strs) != len(ground_truths):
        raise ValueError(f"{len(solution_strs)} solutions but {len(ground_truths)} ground truths")
    verdicts = judge(ground_truths, solution_strs, mode=mode, timeout=timeout, verifier=None)
    return [_as_dict(v) for v in verdicts]
