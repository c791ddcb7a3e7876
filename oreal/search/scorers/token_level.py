"""Scorers that read one number per response token: OREAL's token RM and the policy likelihood.

Both see exactly what the policy saw: the rendered prompt, then the response text as generated
(a partial one ends with the step separator it stopped at; a finished one that ended with eos
gets the eos token back). The step score of step k is read at the token that ends it: the last
token of its separator for every step followed by one, the last response token (eos included)
for the final step of a finished solution.

OREAL's token RM (Lyu et al., arXiv 2502.06781, §2.4, Eq. 10-12) gives a logit h_t per token and
is trained with a sequence-level BCE on the *mean* logit h̄ = (1/T) Σ_t h_t. The step score is
the run's own q_t at the step-end token t (``token_rm.weight_source`` of the run):

    cumulative_mean (default, the release)   q_t = σ((1/t) Σ_{k≤t} h_k)
    per_token       (the paper, Eq. 10)      q_t = σ(h_t)

With ``cumulative_mean`` the score of a prefix is what the RM was trained to output for a whole
response (σ of its mean logit) applied to the prefix, and the last step of a finished solution
reads exactly σ(h̄), the RM's probability that the solution is correct. h_t is read at the
run's ``score_position`` (the token itself, or the one before it).

The likelihood scorer uses the same reading with the policy's log-probs:
s_k = exp((1/t) Σ_{j≤t} log π(y_j | x, y_<j)) at step k's end token t, the geometric-mean token
probability of the response so far (temperature 1).

Responses are re-tokenized from text, which can differ from the sampled ids where a token
straddles a step boundary; the scores are of the text.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from oreal.search.scorers.base import ScoreRequest

__all__ = ["LikelihoodScorer", "TokenLayout", "TokenRMScorer", "token_layout"]

#: Score of a solution that has no response token to read (an empty response without eos).
NO_TOKENS = 0.5


@dataclass(frozen=True)
class TokenLayout:
    """Token ids of one request and, per step, the response index of the token that ends it."""

    prompt_ids: list[int]
    response_ids: list[int]
    step_ends: list[int]


def token_layout(
    tokenizer: PreTrainedTokenizerBase, request: ScoreRequest, eos_token_id: int | None
) -> TokenLayout:
    """Tokenize a request and find its step-end tokens (see the module docstring)."""
    prompt_ids = list(tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
    if not prompt_ids:
        raise ValueError("the prompt tokenizes to nothing")
    text = request.text
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    starts = [start for start, _ in encoded["offset_mapping"]]
    char_ends, position = [], 0
    for k, step in enumerate(request.steps):
        position += len(step)
        if k < len(request.steps) - 1 or request.partial:
            position += len(request.separator)
        char_ends.append(position)
    # The token covering the last character of a step is the last one starting before its end.
    ends = [max(0, bisect.bisect_left(starts, end) - 1) for end in char_ends]
    if request.finish == "eos" and eos_token_id is not None:
        ids.append(int(eos_token_id))
        ends[-1] = len(ids) - 1
    if ids:
        ends = [min(end, len(ids) - 1) for end in ends]
    return TokenLayout(prompt_ids, ids, ends)


class _TokenScorer:
    """Shared batching: layouts sorted by length, right-padded chunks, a [B, R] read-out."""

    name = "token"
    per_step = True

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 16,
        autocast: bool = True,
        eos_token_id: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.autocast = autocast
        self.eos_token_id = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.eos_token_id or 0)

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def token_scores(self, tensors: Any) -> torch.Tensor:
        """Per-token probabilities ``[B, R]`` in the compact response layout."""
        raise NotImplementedError

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        from oreal.batch import pad_rollouts
        from oreal.models.device import autocast_context

        layouts = [token_layout(self.tokenizer, r, self.eos_token_id) for r in requests]
        results: list[list[float]] = [[NO_TOKENS] * len(r.steps) for r in requests]
        todo = [i for i, layout in enumerate(layouts) if layout.response_ids]
        todo.sort(key=lambda i: -(len(layouts[i].prompt_ids) + len(layouts[i].response_ids)))
        for lo in range(0, len(todo), self.batch_size):
            rows = todo[lo : lo + self.batch_size]
            pairs = [(layouts[i].prompt_ids, layouts[i].response_ids) for i in rows]
            tensors = pad_rollouts(pairs, self.pad_token_id, device=self.device)
            with torch.no_grad(), autocast_context(self.device, self.autocast):
                probs = self.token_scores(tensors).float().cpu()
            for row, i in enumerate(rows):
                results[i] = [float(probs[row, end]) for end in layouts[i].step_ends]
        return results


class TokenRMScorer(_TokenScorer):
    """OREAL's token RM of an ``oreal train`` run as a process reward model."""

    name = "token_rm"

    def __init__(self, loaded: Any, *, batch_size: int = 16, autocast: bool = True) -> None:
        super().__init__(loaded.tokenizer, batch_size=batch_size, autocast=autocast)
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.score_position = loaded.score_position
        self.weight_source = loaded.weight_source

    @classmethod
    def from_path(
        cls, path: str | Path, *, device: str | torch.device | None = None, **kwargs: Any
    ) -> TokenRMScorer:
        """The RM of a run directory (latest checkpoint) or of one ``checkpoints/step-N``."""
        from oreal.token_rm import load_token_rm

        return cls(load_token_rm(path, device=device), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def token_scores(self, tensors: Any) -> torch.Tensor:
        from oreal.token_rm.weights import token_probabilities

        logits = self.model(
            tensors.input_ids,
            tensors.attention_mask,
            tensors.response_mask,
            score_position=self.score_position,
        )
        return token_probabilities(logits, tensors.loss_mask, self.weight_source)


class LikelihoodScorer(_TokenScorer):
    """The policy's own geometric-mean token probability of the response so far."""

    name = "likelihood"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 16,
        autocast: bool = True,
    ) -> None:
        super().__init__(tokenizer, batch_size=batch_size, autocast=autocast)
        self.model = model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def token_scores(self, tensors: Any) -> torch.Tensor:
        from oreal.models import token_logprobs
        from oreal.rollout.hf import generation_mode
        from oreal.token_rm.weights import cumulative_mean

        with generation_mode(self.model):
            logprobs, _ = token_logprobs(
                self.model, tensors.input_ids, tensors.attention_mask, tensors.response_mask
            )
        return torch.exp(cumulative_mean(logprobs.float(), tensors.loss_mask))
