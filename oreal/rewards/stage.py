"""The reward stage: run every term on a step's rollouts, fill ``correct``, ``reward`` and the
per-term values on each row, and turn them into the numbers an algorithm learns from.

- ``reward`` is Σ_terms weight·value over the terms that did not abstain (a per-token term
  counts with the sum of its token values; the weighted token values are kept as
  ``token_rewards``). A rollout for which every term abstains is an error.
- ``correct`` comes from the verifier term when there is one; without it, from the reward when
  every reward of the step is 0 or 1; otherwise it is undefined (``None``).
- Binary methods (OREAL, RAFT, PSR, ...) learn from ``correct`` mapped to their reward scale;
  the others from ``reward`` (``"pm1"`` maps r to 2r - 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from oreal.algorithms import rewards_from_correct
from oreal.rewards.terms import FunctionTerm, RewardError, TermValues, VerifierTerm

if TYPE_CHECKING:
    from oreal.algorithms import AlgorithmParams
    from oreal.batch import Rollout, StepBatch
    from oreal.verify import Verifier

__all__ = ["RewardStage", "RewardTerm", "check_terms_for"]

RewardTerm = VerifierTerm | FunctionTerm
VALUE_METHODS = "grpo, dr_grpo, rloo, reinforce"


def check_terms_for(params: AlgorithmParams, terms: Sequence[tuple[str, float, bool]]) -> None:
    """Refuse reward terms a binary method would silently ignore.

    ``terms`` are ``(name, weight, decides_correct)``. A binary method with a verifier term
    learns from the verdict alone, so another term with a non-zero weight would change
    nothing: say so before any work (weight 0 keeps a term as a logged metric).
    """
    if not params.binary or not any(decides for _, _, decides in terms):
        return
    ignored = [f"{name} (weight {weight:g})" for name, weight, decides in terms
               if not decides and weight != 0]  # fmt: skip
    if ignored:
        raise RewardError(
            f"algorithm {params.name!r} learns from correct/incorrect only (the verifier's "
            f"verdict), so reward term(s) {', '.join(ignored)} would not change training: give "
            f"them weight 0 to log them, or use a method that learns from reward values "
            f"({VALUE_METHODS})"
        )


class RewardStage:
    """The step's reward terms, run in order on every rollout."""

    def __init__(self, terms: Sequence[RewardTerm]) -> None:
        if not terms:
            raise RewardError("no reward term: reward.functions is empty")
        names = [term.name for term in terms]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise RewardError(f"reward terms need distinct names; repeated: {duplicates}")
        self.terms = list(terms)

    @property
    def verifier(self) -> Verifier | None:
        """The verifier of the verifier term, if any (evaluation reuses it)."""
        for term in self.terms:
            if isinstance(term, VerifierTerm):
                return term.verifier
        return None

    def describe(self) -> list[tuple[str, float, bool]]:
        return [(t.name, t.weight, t.decides_correct) for t in self.terms]

    def __call__(self, batch: StepBatch) -> None:
        """Fill ``verdict``, ``reward_terms``, ``reward``, ``token_rewards``, ``correct``."""
        if not len(batch):
            return
        outputs: dict[str, TermValues] = {t.name: t(batch.rows, batch.step) for t in self.terms}
        for index, row in enumerate(batch.rows):
            self._fill(row, index, outputs)
        if not any(t.decides_correct for t in self.terms):
            rewards = [row.reward for row in batch.rows]
            binary = all(r in (0.0, 1.0) for r in rewards)
            for row in batch.rows:
                row.correct = row.reward == 1.0 if binary else None

    def _fill(self, row: Rollout, index: int, outputs: dict[str, TermValues]) -> None:
        total, tokens, terms = 0.0, None, {}
        for term in self.terms:
            value = outputs[term.name].values[index]
            verdicts = outputs[term.name].verdicts
            if verdicts is not None:
                row.verdict = verdicts[index]
                if term.decides_correct:
                    row.correct = verdicts[index].correct
            if value is None:
                terms[term.name] = None
                continue
            if isinstance(value, list):
                weighted = torch.tensor(value, dtype=torch.float32) * term.weight
                tokens = weighted if tokens is None else tokens + weighted
                value = float(sum(value))
            terms[term.name] = value
            total += term.weight * value
        if all(value is None for value in terms.values()):
            raise RewardError(
                f"every reward term abstained (returned None) for completion {index} of "
                f"problem {row.problem.id!r}; at least one term must score each completion"
            )
        row.reward, row.token_rewards, row.reward_terms = total, tokens, terms

    def learning_signal(self, batch: StepBatch, params: AlgorithmParams) -> torch.Tensor:
        """The ``[B]`` rewards ``params`` learns from (module docstring)."""
        if params.binary:
            undecided = [row for row in batch.rows if row.correct is None]
            if undecided:
                values = sorted({row.reward for row in undecided})[:6]
                shown = ", ".join(f"{v:g}" for v in values)
                raise RewardError(
                    f"algorithm {params.name!r} learns from correct/incorrect only, but the "
                    f"reward has no verifier term and returned values other than 0 and 1 "
                    f"({shown}): add 'verifier' to reward.functions, return 0/1, or use a "
                    f"method that learns from reward values ({VALUE_METHODS})"
                )
            correct = torch.tensor([bool(row.correct) for row in batch.rows])
            return rewards_from_correct(correct, params.reward_scale)
        rewards = batch.values("reward")
        return rewards if params.reward_scale == "01" else 2.0 * rewards - 1.0

    def close(self) -> None:
        for term in self.terms:
            if isinstance(term, VerifierTerm):
                term.close()


def build_terms(
    specs: Sequence[tuple[str | Callable[..., Any], float, str | None]],
    *,
    mode: str = "strict",
    timeout: float = 5.0,
) -> RewardStage:
    """Terms from ``(function, weight, name)``: ``"verifier"``, ``"module:function"``,
    ``"path/file.py:function"`` or a callable. Imports happen here, before any model loads."""
    from oreal.plugins import import_object

    terms: list[RewardTerm] = []
    for function, weight, name in specs:
        if function == "verifier":
            terms.append(VerifierTerm(name=name or "verifier", weight=weight, mode=mode,
                                      timeout=timeout))  # fmt: skip
            continue
        if isinstance(function, str):
            try:
                function = import_object(function)
            except ValueError as error:
                raise RewardError(f"reward function: {error}") from None
        terms.append(FunctionTerm(function, name=name, weight=weight))
    return RewardStage(terms)
