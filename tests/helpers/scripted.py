"""A rollout engine whose responses are a function of (prompt, sample): the same global batch
of rollouts on one rank or several, whatever the batching. Used to compare data-parallel
layouts on equal inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from oreal.rollout import GenerationOutput, RolloutBatch, SamplingParams

#: Characters a scripted response is made of: digits (which the has_digit reward sees) and
#: letters, so groups are mixed.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz +="


class ScriptedGenerator:
    """``generate`` returns responses keyed by (prompt text, sample index, sampling seed): the
    trainer derives the seed from (run seed, step), so a resumed run gets the same responses."""

    def __init__(self, tokenizer: Any, length: int = 6) -> None:
        self.tokenizer = tokenizer
        self.length = length

    def sync_weights(self, model: Any) -> None:  # nothing to sync: nothing is sampled
        return None

    def _text(self, prompt: str, sample: int, seed: int | None) -> str:
        digest = hashlib.sha256(f"{prompt}|{sample}|{seed}".encode()).digest()
        size = 2 + digest[0] % self.length
        return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[1 : 1 + size])

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        outputs = []
        for g, prompt in enumerate(prompts):
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            for i in range(num_return_sequences):
                text = self._text(prompt, i, params.seed)
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                ids = [*ids, self.tokenizer.eos_token_id]
                outputs.append(GenerationOutput(g, i, prompt, prompt_ids, ids, text, "eos"))
        return RolloutBatch(outputs, len(prompts), num_return_sequences)
