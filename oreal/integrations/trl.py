"""oreal's verifier as a TRL reward function (``GRPOTrainer(reward_funcs=[...])``).

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=...,
**dataset_columns, trainer_state=..., log_extra=..., log_metric=...)`` and takes a list of
floats, where ``None`` skips a sample. Completions are strings or, for conversational datasets,
lists of messages. The gold answer comes from a dataset column (``answer`` by default)::

    from trl import GRPOTrainer
    from oreal.integrations.trl import oreal_accuracy

    trainer = GRPOTrainer(model=..., reward_funcs=[oreal_accuracy], train_dataset=dataset)

Rewards are 1.0 (correct) and 0.0; a sample whose gold is empty gets ``None`` (skipped, as TRL's
own ``accuracy_reward`` does for an unparsable gold). When TRL passes ``log_extra``, the reason
code and the extracted answer of every completion go to its completions table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from oreal.integrations._common import completion_text, judge, reward
from oreal.verify import Verifier
from oreal.verify import verdict as R

RewardFunc = Callable[..., list[float | None]]


def make_reward_func(
    gold_column: str = "answer",
    *,
    mode: str = "strict",
    timeout: float = 5.0,
    verifier: Verifier | None = None,
    name: str = "oreal_accuracy",
) -> RewardFunc:
    """A TRL reward function reading the gold from ``gold_column``.

    ``mode`` and ``timeout`` apply to the process-wide shared verifier; pass ``verifier`` to use
    your own instead (its mode and timeout then apply). ``name`` is what TRL logs it as.
    """

    def reward_func(
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Any] | None = None,
        log_extra: Callable[[str, list[Any]], None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        if completions is None:
            raise TypeError(f"{name}: TRL passes 'completions'; none was given")
        if gold_column not in columns:
            found = ", ".join(sorted(k for k in columns if k not in _TRL_KWARGS)) or "none"
            raise KeyError(
                f"{name}: the dataset has no column {gold_column!r} with the gold answer "
                f"(columns: {found}); use make_reward_func(gold_column=...)"
            )
        golds = columns[gold_column]
        responses = [completion_text(c) for c in completions]
        verdicts = judge(golds, responses, mode=mode, timeout=timeout, verifier=verifier)
        if log_extra is not None:
            log_extra(f"{name}_reason", [v.reason for v in verdicts])
            log_extra(f"{name}_extracted", [v.extracted for v in verdicts])
        return [None if v.reason == R.INVALID_GOLD else reward(v) for v in verdicts]

    reward_func.__name__ = reward_func.__qualname__ = name
    return reward_func


# Keyword arguments TRL adds next to the dataset columns (not columns themselves).
_TRL_KWARGS = frozenset({"trainer_state", "log_metric", "environments", "completion_ids"})

oreal_accuracy = make_reward_func()
"""The default: gold in the ``answer`` column, strict mode (final ``\\boxed{}``), shared pool."""
