"""vLLM rollouts: one colocated engine per rank, weights pushed in memory after each update.

``VLLMGenerator`` implements :class:`~oreal.rollout.base.Generator` on ``vllm.LLM``:

* the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so
  :meth:`VLLMGenerator.sync_weights` hands the trainer's tensors to the model's own
  ``load_weights`` by reference: no checkpoint on disk, no copy through a pipe. Under
  ``torchrun`` each rank builds its own engine with vLLM's ``external_launcher`` executor
  (one engine per GPU, the pattern TRL's ``vllm_mode="colocate"`` uses);
* on GPU the engine sleeps between rollouts (``enable_sleep_mode``; level 2 drops weights and
  KV cache) so the update gets the memory back; ``sync_weights`` wakes the weights, loads them,
  and ``generate`` wakes the KV cache;
* eos, stop strings and ``include_stop_str`` go through the same
  :func:`~oreal.rollout.finish.finish_response` as every backend, on vLLM's token ids;
* each output carries the sampled tokens' log-probs as vLLM computed them
  (``logprobs_mode="processed_logprobs"``: after temperature / top-k / top-p, the same
  definition as the fast CPU path), for truncated importance sampling
  (:mod:`oreal.rollout.mismatch`).

Randomness: each prompt is its own request with seed ``hash(seed, key)``, so a prompt's draws
do not depend on its position in the batch; its K samples share that request's generator.
vLLM's kernels are not batch-invariant, so logits (and thus samples) can still differ across
batch compositions: this backend is keyed but not bitwise layout-invariant.

Install (CPU build, tested; a GPU build is ``pip install vllm``): see docs/rollout.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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
from oreal.rollout.llama_decoder import strip_wrapper_prefixes

__all__ = ["VLLMGenerator", "request_seed"]

_MASK63 = (1 << 63) - 1


def request_seed(seed: int, key: int) -> int:
    """A per-prompt vLLM seed from the step seed and the prompt key (splitmix64 finaliser,
    Steele et al., "Fast splittable pseudorandom number generators", OOPSLA'14)."""
    z = (seed * 0x9E3779B97F4A7C15 + key + 1) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK63


class VLLMGenerator:
    """:class:`~oreal.rollout.base.Generator` on an in-process ``vllm.LLM`` (see module docs).

    ``model`` is what vLLM loads at start (a ``save_pretrained`` directory or hub id); call
    :meth:`sync_weights` with the trainer's module right after construction when the policy
    already differs from it. ``gpu_memory_utilization`` is the share of GPU memory (on vLLM's
    CPU build: of host memory) the engine reserves. ``engine_kwargs`` go to ``vllm.LLM``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        tokenizer: PreTrainedTokenizerBase,
        *,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
        sleep_between_calls: bool | None = None,
        eos_token_ids: Sequence[int] | None = None,
        seed: int = 0,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        # In-process engine: sync_weights passes tensors by reference (set before vllm import).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import vllm

        self._vllm = vllm
        self.tokenizer = tokenizer
        on_gpu = torch.cuda.is_available()
        self.sleep_between_calls = on_gpu if sleep_between_calls is None else sleep_between_calls
        kwargs: dict[str, Any] = {
            "model": str(model),
            "tokenizer": str(model),
            "dtype": dtype,
            "seed": seed,
            "logprobs_mode": "processed_logprobs",
            "enable_sleep_mode": self.sleep_between_calls,
            # On vLLM's CPU build this is the fraction of host memory reserved (KV cache).
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # One engine per rank inside torchrun (vLLM's SPMD mode for colocated trainers).
            kwargs["distributed_executor_backend"] = "external_launcher"
        kwargs.update(engine_kwargs or {})
        start = time.perf_counter()
        self.llm = vllm.LLM(**kwargs)
        self.engine_start_s = time.perf_counter() - start
        ids = set(eos_token_ids or [])
        if not ids:
            eos = tokenizer.eos_token_id
            ids = {eos} if isinstance(eos, int) else set(eos or [])
            generation_eos = self.llm.llm_engine.model_config.hf_config.eos_token_id
            ids |= (
                {generation_eos} if isinstance(generation_eos, int) else set(generation_eos or [])
            )
        if not ids:
            raise ValueError("no eos token id: pass eos_token_ids")
        self.eos_token_ids: frozenset[int] = frozenset(ids)
        self._asleep = False
        if self.sleep_between_calls:
            self._sleep()

    # ----------------------------------------------------------------------------- weights

    def sync_weights(self, model: PreTrainedModel | Mapping[str, torch.Tensor]) -> None:
        """Load the trainer's weights (a module or a full state dict) into the engine, in
        memory (the engine is in-process, so the tensors are passed by reference)."""
        state = model.state_dict() if isinstance(model, torch.nn.Module) else model
        weights = [(strip_wrapper_prefixes(name), _full(t)) for name, t in state.items()]
        if self._asleep:
            self.llm.wake_up(tags=["weights"])
        # vLLM's in-place reload: takes checkpoint-format names and redoes the backend's
        # post-load processing (fused layouts, CPU weight packing) like a fresh load.
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
        )
        if self._asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._asleep = False
        # Cached prefixes were computed with the old weights.
        self.llm.reset_prefix_cache()

    def _sleep(self) -> None:
        self.llm.sleep(level=2)
        self._asleep = True

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    # ----------------------------------------------------------------------------- generate

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        num_return_sequences: int = 1,
        *,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """Sample ``num_return_sequences`` responses per prompt (one request per prompt)."""
        encoded, keys = encode_request(self.tokenizer, prompts, num_return_sequences, keys)
        k = num_return_sequences
        seed = resolve_seed(params)
        requests = [{"prompt_token_ids": list(ids)} for ids in encoded]
        sampling = [self._sampling_params(params, k, request_seed(seed, key)) for key in keys]

        self._wake()
        start = time.perf_counter()
        results = self.llm.generate(requests, sampling, use_tqdm=False)
        elapsed = time.perf_counter() - start
        if self.sleep_between_calls:
            self._sleep()

        outputs = []
        for g, result in enumerate(results):
            completions = sorted(result.outputs, key=lambda c: c.index)
            if params.greedy:  # vLLM refuses n > 1 when greedy; the K samples are equal anyway
                completions = completions * k
            for i, completion in enumerate(completions):
                tokens = list(completion.token_ids)
                ids, text, reason = finish_response(
                    tokens, params, self.eos_token_ids, self._decode
                )
                logprobs = _sampled_logprobs(completion.logprobs, tokens)
                outputs.append(
                    GenerationOutput(
                        group=g,
                        sample=i,
                        prompt=prompts[g],
                        prompt_ids=list(encoded[g]),
                        response_ids=ids,
                        text=text,
                        finish_reason=reason,
                        logprobs=logprobs[: len(ids)] if logprobs is not None else None,
                    )
                )
        stats = generation_stats(outputs, elapsed)
        return RolloutBatch(outputs=outputs, num_prompts=len(prompts), k=k, stats=stats)

    def _sampling_params(self, params: SamplingParams, k: int, seed: int) -> Any:
        """vLLM's SamplingParams for ours: nothing left to engine or checkpoint defaults."""
        greedy = params.greedy
        return self._vllm.SamplingParams(
            n=1 if greedy else k,
            temperature=0.0 if greedy else params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=0 if greedy or params.top_k == 0 else params.top_k,
            min_p=0.0,
            repetition_penalty=1.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=params.include_stop_str,
            stop_token_ids=sorted(self.eos_token_ids),
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
            logprobs=0,
            seed=seed,
        )

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a parameter or DTensor (FSDP2 full state dicts hold DTensors)."""
    full = getattr(tensor, "full_tensor", None)
    return (full() if callable(full) else tensor).detach()


def _sampled_logprobs(
    logprobs: Iterable[Mapping[int, Any]] | None, tokens: list[int]
) -> list[float] | None:
    """The sampled token's entry of each step's logprob dict (``logprobs=0`` returns just it)."""
    if logprobs is None:
        return None
    return [float(step[token].logprob) for step, token in zip(logprobs, tokens, strict=False)]
