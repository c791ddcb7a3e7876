"""Outcome rewards: from (problem, response) pairs to one number per response.

A reward function has one signature, whether it is the built-in verifier reward or a user's
function named as ``module:function`` (or ``path/to/file.py:function``) in the config::

    def my_reward(problems: Sequence[Problem], responses: Sequence[str],
                  truncated: Sequence[bool]) -> Sequence[float]: ...

It scores a whole batch at once (so it can parallelise) and returns, for each response, a score
in [0, 1] where 1 means correct. Algorithms that want rewards of +-1 (OREAL's release,
Reinforce-Rej) map them with ``2r - 1`` themselves, so a reward function never needs to know
which algorithm consumes it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from oreal.data import Problem

if TYPE_CHECKING:
    from oreal.verify import Verdict


class RewardFunction(Protocol):
    def __call__(
        self,
        problems: Sequence[Problem],
        responses: Sequence[str],
        truncated: Sequence[bool],
    ) -> Sequence[float]: ...


class VerifierReward:
    """The default reward: 1.0 when the verifier accepts the answer, else 0.0.

    Strict mode by default: the answer must be the final ``\\boxed{}``, and a truncated response
    is incorrect (oreal.md §11: the release gives -1 to responses without the stop token).
    The verdicts of the last call are kept in ``last_verdicts`` for logging.
    """

    def __init__(self, mode: str = "strict", timeout: float = 5.0, workers: int | None = None):
        from oreal.verify import Verifier  # its worker pool starts only when a run needs it

        self.verifier = Verifier(mode=mode, timeout=timeout, workers=workers)
        self.last_verdicts: list[Verdict] = []

    def __call__(
        self,
        problems: Sequence[Problem],
        responses: Sequence[str],
        truncated: Sequence[bool],
    ) -> list[float]:
        golds = [problem.answer for problem in problems]
        self.last_verdicts = self.verifier.verify_batch(golds, list(responses), list(truncated))
        return [1.0 if verdict.correct else 0.0 for verdict in self.last_verdicts]

    def close(self) -> None:
        self.verifier.close()


def import_object(spec: str) -> object:
    """Import ``module:attribute`` or ``path/to/file.py:attribute``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'module:function' or 'file.py:function', got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"reward file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"cannot import module {module_name!r}: {error}") from error
    if not hasattr(module, attribute):
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def build_reward(spec: str, *, mode: str = "strict", timeout: float = 5.0) -> RewardFunction:
    """``"verifier"`` gives the built-in verifier reward; anything else is imported."""
    if spec == "verifier":
        return VerifierReward(mode=mode, timeout=timeout)
    function = import_object(spec)
    if not callable(function):
        raise ValueError(f"reward {spec!r} is not callable")
    return _checked(function, spec)


def _checked(function: Callable[..., Sequence[float]], spec: str) -> RewardFunction:
    """Wrap a user function so a wrong return value fails loudly, naming the function."""

    def reward(
        problems: Sequence[Problem], responses: Sequence[str], truncated: Sequence[bool]
    ) -> list[float]:
        scores = list(function(problems, responses, truncated))
        if len(scores) != len(responses):
            raise ValueError(
                f"reward {spec!r} returned {len(scores)} scores for {len(responses)} responses"
            )
        try:
            return [float(score) for score in scores]
        except (TypeError, ValueError) as error:
            raise ValueError(f"reward {spec!r} returned a non-numeric score: {error}") from error

    return reward
