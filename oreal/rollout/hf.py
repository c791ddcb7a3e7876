"""Rollouts with transformers ``generate``: batched, left-padded, KV-cached, bf16 autocast.

This backend shares the policy module with the trainer (no weight copies, nothing to sync): the
simplest correct backend, and the reference the others are tested against. Its sampling uses
torch's global stream in batch order, so it is not layout-invariant; the fast CPU path
(:mod:`oreal.rollout.fast`) and vLLM (:mod:`oreal.rollout.vllm`) implement the same protocol.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from oreal.models.device import autocast_context
from oreal.rollout.base import (
    FinishReason,
    GenerationOutput,
    RolloutBatch,
    SamplingParams,
    encode_request,
    generation_stats,
)
from oreal.rollout.finish import finish_response

__all__ = ["HFGenerator", "eos_token_ids_of", "generation_mode"]


@contextlib.contextmanager
def generation_mode(model: PreTrainedModel) -> Iterator[None]:
    """Temporarily put ``model`` in eval mode so gradient checkpointing cannot switch off the KV
    cache (transformers disables caching in checkpointed layers only while ``training``).

    The previous train/eval state is restored on exit, even on error.
    """
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _as_id_set(value: int | Sequence[int] | None) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


def eos_token_ids_of(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    eos_token_ids: Sequence[int] | None = None,
) -> frozenset[int]:
    """The ids that end a response: ``eos_token_ids`` if given, else the tokenizer's eos plus
    the model's ``generation_config.eos_token_id`` (chat models often list several)."""
    if eos_token_ids is None:
        ids = _as_id_set(tokenizer.eos_token_id)
        ids |= _as_id_set(getattr(model.generation_config, "eos_token_id", None))
    else:
        ids = _as_id_set(eos_token_ids)
    if not ids:
        raise ValueError("no eos token id: pass eos_token_ids")
    return frozenset(ids)


class HFGenerator:
    """:class:`~oreal.rollout.base.Generator` backed by ``model.generate``.

    Prompts are tokenized as given (``add_special_tokens=False``: they are already templated),
    repeated K times, sorted by length so each batch of at most ``max_batch_size`` rows carries
    little left padding, generated, then restored to prompt-major order. Generation always passes
    ``use_cache=True`` and runs in eval mode, so gradient checkpointing set up for training does
    not make decoding quadratic.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch_size: int = 64,
        autocast: bool = True,
        eos_token_ids: Sequence[int] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.autocast = autocast
        self.eos_token_ids = eos_token_ids_of(model, tokenizer, eos_token_ids)
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = int(pad if pad is not None else min(self.eos_token_ids))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sync_weights(self, model: PreTrainedModel | Mapping[str, torch.Tensor]) -> None:
        """Use ``model`` for later generations; the HF backend holds the module itself (a state
        dict is loaded into it)."""
        if isinstance(model, torch.nn.Module):
            self.model = model
        else:
            self.model.load_state_dict(dict(model))

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """Sample ``num_return_sequences`` responses per prompt (see the class docstring).

        ``keys`` are accepted for the protocol and ignored: this backend draws from one seeded
        stream in batch order, so its samples depend on the batch layout (not layout-invariant).
        """
        encoded, _ = encode_request(self.tokenizer, prompts, num_return_sequences, keys)
        k = num_return_sequences
        jobs = [(g, i) for g in range(len(prompts)) for i in range(k)]
        # Longest first: batches of similar length waste little compute on padding.
        order = sorted(range(len(jobs)), key=lambda j: -len(encoded[jobs[j][0]]))
        responses: list[list[int]] = [[] for _ in jobs]

        start = time.perf_counter()
        rng_devices = [self.device] if self.device.type == "cuda" else []
        with contextlib.ExitStack() as stack:
            if params.seed is not None:
                stack.enter_context(torch.random.fork_rng(devices=rng_devices))
                torch.manual_seed(params.seed)
            for lo in range(0, len(order), self.max_batch_size):
                chunk = order[lo : lo + self.max_batch_size]
                rows = self._generate_batch([encoded[jobs[j][0]] for j in chunk], params)
                for j, row in zip(chunk, rows, strict=True):
                    responses[j] = row
        elapsed = time.perf_counter() - start

        outputs = []
        for j, (g, i) in enumerate(jobs):
            response_ids, text, reason = self._finish(responses[j], params)
            outputs.append(
                GenerationOutput(
                    group=g,
                    sample=i,
                    prompt=prompts[g],
                    prompt_ids=list(encoded[g]),
                    response_ids=response_ids,
                    text=text,
                    finish_reason=reason,
                )
            )
        stats = generation_stats(outputs, elapsed)
        return RolloutBatch(outputs=outputs, num_prompts=len(prompts), k=k, stats=stats)

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        """A complete config, so nothing leaks in from the checkpoint's generation_config.json
        (repetition penalties, default top_k=50, ...) and sampling is exactly what was asked."""
        kwargs: dict[str, object] = {
            "max_new_tokens": params.max_new_tokens,
            "eos_token_id": sorted(self.eos_token_ids),
            "pad_token_id": self.pad_token_id,
            "use_cache": True,
            "num_beams": 1,
            "repetition_penalty": 1.0,
        }
        if params.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
            )
        if params.stop:
            kwargs["stop_strings"] = list(params.stop)
        return GenerationConfig(**kwargs)

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[list[int]]:
        """Left-pad one batch, generate, and return the new tokens of each row (with padding)."""
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        device = self.device
        extra = {"tokenizer": self.tokenizer} if params.stop else {}
        with (
            generation_mode(self.model),
            torch.no_grad(),
            autocast_context(device, enabled=self.autocast),
        ):
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=self._generation_config(params),
                **extra,
            )
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        return sequences[:, width:].cpu().tolist()

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _finish(
        self, tokens: list[int], params: SamplingParams
    ) -> tuple[list[int], str, FinishReason]:
        """Cut one row at its first eos or stop string; report why it ended."""
        return finish_response(tokens, params, self.eos_token_ids, self._decode)
