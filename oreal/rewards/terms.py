"""Reward terms: the verifier, and plain functions called TRL-style.

A term scores a list of rollouts and returns one value per rollout: a float, ``None`` (this
term abstains for that rollout: it does not apply to it), or a list of floats with one value
per response token (a process reward; its sum is the term's value for the rollout).

A user function is called with keyword arguments, as TRL calls its ``reward_funcs``::

    def length_penalty(completions, completion_ids, **kwargs) -> list[float]:
        return [-0.001 * len(ids) for ids in completion_ids]

It receives ``prompts`` (templated prompt strings), ``completions`` (response texts),
``completion_ids`` (response token ids), ``finish_reasons`` (``"eos"``, ``"stop"`` or
``"length"``), ``truncated``, ``step``, the problem's ``question``, ``answer`` and ``problem_id``,
and every other column of the problem's source (its metadata, e.g. ``level``) by name. A
function that takes ``**kwargs`` gets all of them; one that does not gets only the ones it
names. Values are checked: a wrong count, a non-number or a non-finite number is an error
that names the function.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oreal.errors import UserError

if TYPE_CHECKING:
    from oreal.batch import Rollout
    from oreal.verify import Verdict, Verifier

__all__ = ["FunctionTerm", "RewardError", "TermValue", "TermValues", "VerifierTerm"]

TermValue = float | list[float] | None


class RewardError(UserError):
    """A reward term returned something unusable; the message names the term."""


@dataclass
class TermValues:
    """One term's output for a batch: a value per rollout, and verdicts if it judged."""

    values: list[TermValue]
    verdicts: list[Verdict] | None = None


class VerifierTerm:
    """1.0 when the verifier accepts the answer, else 0.0; it decides ``correct``.

    Strict mode by default: the answer must be the final ``\\boxed{}``, and a truncated
    response is incorrect (OREAL's release gives -1 to responses without the stop token).
    """

    decides_correct = True

    def __init__(
        self,
        *,
        name: str = "verifier",
        weight: float = 1.0,
        mode: str = "strict",
        timeout: float = 5.0,
        verifier: Verifier | None = None,
    ) -> None:
        from oreal.verify import Verifier  # its worker pool starts only when a run needs it

        self.name, self.weight = name, weight
        self.verifier = verifier if verifier is not None else Verifier(mode=mode, timeout=timeout)

    def __call__(self, rows: Sequence[Rollout], step: int) -> TermValues:
        verdicts = self.verifier.verify_batch(
            [row.problem.answer for row in rows],
            [row.text for row in rows],
            [row.truncated for row in rows],
        )
        return TermValues([1.0 if v.correct else 0.0 for v in verdicts], verdicts)

    def close(self) -> None:
        self.verifier.close()


def _label(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or getattr(function, "__name__", repr(function))


class FunctionTerm:
    """A plain function of keyword arguments, TRL-style (module docstring)."""

    decides_correct = False

    def __init__(
        self, function: Callable[..., Any], *, name: str | None = None, weight: float = 1.0
    ) -> None:
        if not callable(function):
            raise RewardError(f"reward function {function!r} is not callable")
        self.function = function
        self.name = name or getattr(function, "__name__", "reward")
        self.weight = weight
        parameters = list(inspect.signature(function).parameters.values())
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        named = [p for p in parameters if p.kind in keyword]
        self._takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        self._names = {p.name for p in named}
        self._required = {p.name for p in named if p.default is inspect.Parameter.empty}

    def arguments(self, rows: Sequence[Rollout], step: int) -> dict[str, Any]:
        """Every keyword argument a reward function can take, for ``rows``."""
        kwargs: dict[str, Any] = {
            "prompts": [row.prompt for row in rows],
            "completions": [row.text for row in rows],
            "completion_ids": [list(row.response_ids) for row in rows],
            "finish_reasons": [row.finish_reason for row in rows],
            "truncated": [row.truncated for row in rows],
            "question": [row.problem.question for row in rows],
            "answer": [row.problem.answer for row in rows],
            "problem_id": [row.problem.id for row in rows],
            "step": step,
        }
        columns = {key for row in rows for key in row.problem.metadata}
        for column in sorted(columns - set(kwargs)):
            kwargs[column] = [row.problem.metadata.get(column) for row in rows]
        return kwargs

    def __call__(self, rows: Sequence[Rollout], step: int) -> TermValues:
        available = self.arguments(rows, step)
        missing = self._required - set(available)
        if missing:
            raise RewardError(
                f"reward function {_label(self.function)!r} needs argument(s) "
                f"{', '.join(sorted(missing))}, which are not fields of the data; it can take: "
                f"{', '.join(available)}"
            )
        kwargs = available if self._takes_all else {k: available[k] for k in self._names}
        returned = self.function(**kwargs)
        return TermValues(self._check(returned, rows))

    def _check(self, returned: Any, rows: Sequence[Rollout]) -> list[TermValue]:
        label = _label(self.function)
        try:
            values = list(returned)
        except TypeError:
            raise RewardError(
                f"reward function {label!r} returned {type(returned).__name__}, not a list"
            ) from None
        if len(values) != len(rows):
            raise RewardError(
                f"reward function {label!r} returned {len(values)} values for "
                f"{len(rows)} completions"
            )
        out: list[TermValue] = []
        for index, (value, row) in enumerate(zip(values, rows, strict=True)):
            if value is None:
                out.append(None)
            elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
                tokens = _as_floats(value, label, index)
                if len(tokens) != row.num_tokens:
                    raise RewardError(
                        f"reward function {label!r} returned {len(tokens)} token rewards for "
                        f"completion {index}, which has {row.num_tokens} tokens"
                    )
                out.append(tokens)
            else:
                out.append(_as_floats([value], label, index)[0])
        return out


def _as_floats(values: Any, label: str, index: int) -> list[float]:
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    if not isinstance(items, list):
        items = [items]
    floats = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise RewardError(
                f"reward function {label!r} returned {item!r} for completion {index}, not a number"
            ) from None
        if not math.isfinite(number):
            raise RewardError(
                f"reward function {label!r} returned {number} for completion {index}; "
                "rewards must be finite"
            )
        floats.append(number)
    return floats
