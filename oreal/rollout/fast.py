"""The fast CPU rollout backend: own bf16 weights, static KV cache, prompt reuse, keyed sampling.

:class:`FastGenerator` implements :class:`~oreal.rollout.base.Generator` on a
:class:`~oreal.rollout.llama_decoder.LlamaDecoder`:

* weights: a bf16 copy for the matmuls (fp32 for norms and embeddings), refreshed in place by
  :meth:`FastGenerator.sync_weights` after each optimizer step instead of re-cast per forward;
* KV cache: allocated once (rows x (prompt + max_new_tokens)) and reused across calls;
* prompt reuse: each distinct prompt is prefilled once and its cache rows copied to its K
  samples;
* finished rows are compacted out of the batch once a quarter of it has finished;
* sampling: inverse CDF on keyed Philox uniforms (:mod:`oreal.rollout.sampling`), so sample ``i``
  of the prompt with key ``p`` is the same whatever the batch size, padding, order or rank, and
  each token's log-prob under the sampling distribution comes for free.

Numerics follow transformers under CPU bf16 autocast; greedy decoding reproduces
``HFGenerator``'s tokens (tested on the embedded model). Other architectures fall back to
:class:`~oreal.rollout.hf.HFGenerator` with one warning (then not layout-invariant).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from oreal.rollout.base import (
    GenerationOutput,
    RolloutBatch,
    SamplingParams,
    encode_request,
    generation_stats,
    resolve_seed,
)
from oreal.rollout.finish import finish_response
from oreal.rollout.hf import HFGenerator, eos_token_ids_of
from oreal.rollout.llama_decoder import KVCache, LlamaDecoder, unsupported_reason
from oreal.rollout.sampling import keyed_uniforms, sample_from_logits
from oreal.threads import ThreadChooser, candidate_thread_counts

__all__ = ["FastGenerator", "make_cpu_generator"]

logger = logging.getLogger(__name__)

#: Compact the batch once this fraction of its rows has finished (a compaction copies the
#: whole KV cache, so doing it for every finished row would cost more than it saves).
_COMPACT_FRACTION = 0.25


class FastGenerator:
    """Keyed, layout-invariant CPU sampling on a Llama-family decoder (see the module docs)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch_size: int = 64,
        matmul_dtype: torch.dtype = torch.bfloat16,
        eos_token_ids: Sequence[int] | None = None,
        adaptive_threads: bool = True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if next(model.parameters()).device.type != "cpu":
            raise ValueError("FastGenerator runs on CPU; use the vLLM backend on GPUs")
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.eos_token_ids = eos_token_ids_of(model, tokenizer, eos_token_ids)
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = int(pad if pad is not None else min(self.eos_token_ids))
        self.decoder = LlamaDecoder(model, matmul_dtype=matmul_dtype)
        self._cache: KVCache | None = None
        self.adaptive_threads = adaptive_threads
        self._threads: ThreadChooser | None = None

    def sync_weights(self, model: PreTrainedModel | Mapping[str, torch.Tensor]) -> None:
        """Refresh the decoder's weights from the trained module or a full state dict."""
        self.decoder.load_weights(model)

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """Sample ``num_return_sequences`` responses per prompt, keyed by ``keys`` (default
        ``0..n-1``) and ``params.seed`` (drawn from torch's global RNG when ``None``)."""
        encoded, keys = encode_request(self.tokenizer, prompts, num_return_sequences, keys)
        k = num_return_sequences
        seed = resolve_seed(params)
        jobs = [(g, i) for g in range(len(prompts)) for i in range(k)]
        # Longest prompts first (stable, so a prompt's samples stay together): batches of
        # similar length carry little padding and share prefills.
        order = sorted(range(len(jobs)), key=lambda j: -len(encoded[jobs[j][0]]))
        responses: list[list[int]] = [[] for _ in jobs]
        logprobs: list[list[float]] = [[] for _ in jobs]

        start = time.perf_counter()
        threads = self._thread_chooser()
        threads.begin()
        try:
            for lo in range(0, len(order), self.max_batch_size):
                chunk = order[lo : lo + self.max_batch_size]
                rows = [jobs[j] for j in chunk]
                tokens, lps = self._generate_rows(encoded, rows, keys, seed, params, threads)
                for j, row_tokens, row_lps in zip(chunk, tokens, lps, strict=True):
                    responses[j], logprobs[j] = row_tokens, row_lps
        finally:
            threads.restore()
        elapsed = time.perf_counter() - start

        outputs = []
        for j, (g, i) in enumerate(jobs):
            ids, text, reason = finish_response(
                responses[j], params, self.eos_token_ids, self._decode
            )
            outputs.append(
                GenerationOutput(
                    group=g,
                    sample=i,
                    prompt=prompts[g],
                    prompt_ids=list(encoded[g]),
                    response_ids=ids,
                    text=text,
                    finish_reason=reason,
                    logprobs=logprobs[j][: len(ids)],
                )
            )
        stats = generation_stats(outputs, elapsed)
        return RolloutBatch(outputs=outputs, num_prompts=len(prompts), k=k, stats=stats)

    # --------------------------------------------------------------------------- internals

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _thread_chooser(self) -> ThreadChooser:
        """The decode loop's thread chooser, rebuilt when torch's thread count was changed
        (its candidates are that count and its halvings; one candidate when not adaptive)."""
        counts = candidate_thread_counts(torch.get_num_threads())
        if not self.adaptive_threads:
            counts = counts[:1]
        if self._threads is None or self._threads.candidates != counts:
            self._threads = ThreadChooser(counts)
        return self._threads

    def _cache_for(self, rows: int, length: int) -> KVCache:
        """The preallocated cache, regrown only when a call needs more rows or columns."""
        cache = self._cache
        if cache is None or cache.rows < rows or cache.length < length:
            old_rows = cache.rows if cache is not None else 0
            old_length = cache.length if cache is not None else 0
            # At least 2 rows: the decoder computes a lone row as a pair (bitwise batch-invariant).
            self._cache = cache = self.decoder.new_cache(
                max(rows, old_rows, 2), max(length, old_length)
            )
        return cache

    @torch.no_grad()
    def _generate_rows(
        self,
        encoded: list[list[int]],
        rows: list[tuple[int, int]],
        keys: list[int],
        seed: int,
        params: SamplingParams,
        threads: ThreadChooser,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Generate the ``(prompt, sample)`` rows of one batch; tokens and log-probs per row."""
        distinct = sorted({g for g, _ in rows})
        steps = params.max_new_tokens
        longest = max(len(encoded[g]) for g in distinct)
        cache = self._cache_for(len(rows), longest + steps)
        # Each distinct prompt is prefilled once, into the cache rows of all its samples.
        targets = [[r for r, (g, _) in enumerate(rows) if g == d] for d in distinct]
        prompt_logits = self.decoder.prefill([encoded[g] for g in distinct], cache, targets)
        slot = {g: p for p, g in enumerate(distinct)}
        logits = prompt_logits[torch.tensor([slot[g] for g, _ in rows])]
        position = torch.tensor([len(encoded[g]) for g, _ in rows])  # of the next token
        uniforms = None
        if not params.greedy:
            row_keys = torch.tensor([keys[g] for g, _ in rows])
            uniforms = keyed_uniforms(seed, row_keys, torch.tensor([i for _, i in rows]), steps)

        out_tokens = torch.full((len(rows), steps), self.pad_token_id, dtype=torch.long)
        out_logprobs = torch.zeros((len(rows), steps))
        live = torch.arange(len(rows))  # batch slot -> row; finished rows drop out on compaction
        running = torch.ones(len(rows), dtype=torch.bool)  # per batch slot
        eos = torch.tensor(sorted(self.eos_token_ids))
        for t in range(steps):
            tokens, lps = sample_from_logits(
                logits,
                None if uniforms is None else uniforms[live, t],
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
            )
            out_tokens[live, t] = torch.where(running, tokens, self.pad_token_id)
            out_logprobs[live, t] = lps
            running &= ~torch.isin(tokens, eos)
            if params.stop:
                running &= ~self._stopped(out_tokens, live, running, t, params)
            if t == steps - 1 or not bool(running.any()):
                break
            if float(running.float().mean()) <= 1 - _COMPACT_FRACTION:
                keep = running.nonzero().squeeze(1)
                cache.copy_rows(keep, int(position.max()))
                live, running, tokens, position = (
                    live[keep],
                    running[keep],
                    tokens[keep],
                    position[keep],
                )
            logits = threads.run(self.decoder.decode, tokens, position, cache)
            position = position + 1
        return out_tokens.tolist(), out_logprobs.tolist()

    def _stopped(
        self,
        out_tokens: torch.Tensor,
        live: torch.Tensor,
        running: torch.Tensor,
        t: int,
        params: SamplingParams,
    ) -> torch.Tensor:
        """Which running rows now contain a stop string. Only decides when to stop decoding;
        the cut itself is :func:`finish_response`'s, on the whole row."""
        stopped = torch.zeros_like(running)
        # A stop string just completed lies in the last few tokens (each decodes to >= 1
        # character); decoding only that tail keeps the check O(1) per row and step.
        tail = max(len(s) for s in params.stop) + 4
        for slot in running.nonzero().squeeze(1).tolist():
            text = self._decode(out_tokens[int(live[slot]), max(0, t + 1 - tail) : t + 1].tolist())
            stopped[slot] = any(s in text for s in params.stop)
        return stopped


def make_cpu_generator(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_batch_size: int = 64,
    eos_token_ids: Sequence[int] | None = None,
) -> FastGenerator | HFGenerator:
    """The fast CPU backend when the architecture is supported, else ``HFGenerator`` (warned)."""
    reason = unsupported_reason(model)
    if reason is None:
        return FastGenerator(
            model, tokenizer, max_batch_size=max_batch_size, eos_token_ids=eos_token_ids
        )
    logger.warning(
        "fast CPU rollouts do not support this model (%s); falling back to transformers "
        "generate, whose sampling depends on the batch layout",
        reason,
    )
    return HFGenerator(model, tokenizer, max_batch_size=max_batch_size, eos_token_ids=eos_token_ids)
