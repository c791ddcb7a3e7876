"""Scripted generators and scorers with known behaviour, for tests of search strategies.

:class:`ScriptedGenerator` implements the :class:`~oreal.rollout.Generator` protocol with a
table instead of a model: given the steps a solution has so far, ``next_step`` returns the
choices for the next step (text, probability, whether it ends the solution). With a stop string
in the sampling params it generates one step (as the step engine asks), without one a whole
solution. Token ids come from the tiny character-level tokenizer, so a step of c characters
costs c tokens (plus the separator's, plus eos), which makes budget accounting checkable.
:class:`ScriptedScorer` scores each step by a function of its text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from oreal.search.scorers.base import ScoreRequest
from oreal.search.steps import STEP_SEPARATOR

__all__ = ["ASSISTANT_MARK", "Choice", "ScriptedGenerator", "ScriptedScorer"]

#: Where the response begins in a ChatML prompt (the tiny tokenizer's chat template).
ASSISTANT_MARK = "<|im_start|>assistant\n"
#: (step text, probability, ends the solution)
Choice = tuple[str, float, bool]


class ScriptedGenerator:
    """A Generator drawing each next step from ``next_step(steps so far)`` (module docstring).

    Each row draws from its own generator keyed by (``params.seed``, the row's key, sample), as
    the fast CPU engine does (the row's index when no keys are given). ``calls`` records the
    response prefixes of every call, for tests that check what a strategy chose to extend.
    """

    def __init__(
        self,
        next_step: Callable[[tuple[str, ...]], Sequence[Choice]],
        *,
        separator: str = STEP_SEPARATOR,
    ) -> None:
        from oreal.models.tiny import build_tiny_tokenizer

        self.tokenizer = build_tiny_tokenizer()
        self.next_step = next_step
        self.separator = separator
        self.calls: list[list[tuple[str, ...]]] = []
        self.eos_token_id = int(self.tokenizer.eos_token_id)

    def sync_weights(self, model: Any) -> None:
        """Nothing to sync: there is no model."""

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _draw(self, steps: tuple[str, ...], rng: np.random.Generator) -> tuple[str, bool]:
        choices = list(self.next_step(steps))
        p = np.array([c[1] for c in choices], dtype=np.float64)
        index = int(rng.choice(len(choices), p=p / p.sum()))
        return choices[index][0], choices[index][2]

    def generate(
        self,
        prompts: Sequence[str],
        params: Any,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> Any:
        from oreal.rollout import GenerationOutput, RolloutBatch

        stepwise = self.separator in params.stop
        outputs, prefixes = [], []
        for g, prompt in enumerate(prompts):
            response = prompt.rsplit(ASSISTANT_MARK, 1)[-1]
            steps = tuple(response.split(self.separator)[:-1]) if response else ()
            prefixes.append(steps)
            for i in range(num_return_sequences):
                key = g if keys is None else int(keys[g])  # keyed like the fast engine
                rng = np.random.default_rng([params.seed or 0, key, i])
                drawn: list[str] = []
                while True:
                    text, ends = self._draw((*steps, *drawn), rng)
                    drawn.append(text)
                    if ends or stepwise or len(drawn) > params.max_new_tokens:
                        break
                body = self.separator.join(drawn)
                ids = self._ids(body + ("" if ends else self.separator))
                if ends:
                    ids.append(self.eos_token_id)
                reason = "eos" if ends else "stop"
                if len(ids) > params.max_new_tokens:
                    ids = ids[: params.max_new_tokens]
                    body = self.tokenizer.decode(ids, skip_special_tokens=False)
                    reason = "length"
                outputs.append(GenerationOutput(g, i, prompt, self._ids(prompt), ids, body, reason))
        self.calls.append(prefixes)
        return RolloutBatch(outputs, len(prompts), num_return_sequences)


class ScriptedScorer:
    """Step score = ``step_score(step text)``; ``per_step=False`` scores the joined text."""

    name = "scripted"

    def __init__(self, step_score: Callable[[str], float], *, per_step: bool = True) -> None:
        self.step_score = step_score
        self.per_step = per_step
        self.requests: list[ScoreRequest] = []

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        self.requests.extend(requests)
        if not self.per_step:
            return [[self.step_score(r.separator.join(r.steps))] for r in requests]
        return [[self.step_score(step) for step in r.steps] for r in requests]
