"""VLLMGenerator against transformers on a tiny Llama: greedy tokens, finish logic (eos, stop
strings, include_stop_str), engine log-probs, keyed per-prompt seeds and in-memory weight sync.

Runs where ``vllm`` imports (e.g. the CPU build, see docs/rollout.md); skipped otherwise.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm")

from helpers.reference import sampled_token_logprobs

from oreal.models.tiny import build_tiny_model, save_tiny
from oreal.rollout import Generator, HFGenerator, SamplingParams
from oreal.rollout.vllm import VLLMGenerator, request_seed

#: vLLM's CPU attention wants head_dim >= 32.
SHAPE = {"hidden": 128, "heads": 4, "kv_heads": 2, "layers": 2}
GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)
QUESTIONS = ["1+1=", "What is 12*3-4?", "(2+3)*4=", "x^2=9, x=?"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tokenizer):
    path = save_tiny(tmp_path_factory.mktemp("tiny"), seed=0, **SHAPE)
    return VLLMGenerator(
        path,
        tokenizer,
        dtype="float32",
        gpu_memory_utilization=0.05,
        max_model_len=256,
        engine_kwargs={"enforce_eager": True},
    )


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_model(tokenizer, seed=0, **SHAPE)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in QUESTIONS
    ]


def summary(batch) -> list[tuple[int, int, list[int], str, str]]:
    return [(o.group, o.sample, o.response_ids, o.text, o.finish_reason) for o in batch]


def test_greedy_equals_transformers(engine, model, tokenizer, prompts):
    assert isinstance(engine, Generator)
    reference = HFGenerator(model, tokenizer, autocast=False).generate(prompts, GREEDY, 2)
    assert summary(engine.generate(prompts, GREEDY, 2)) == summary(reference)


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_and_eos_match_hf_generator(engine, model, tokenizer, prompts, include):
    long = SamplingParams(max_new_tokens=16, temperature=0.0)
    plain = HFGenerator(model, tokenizer, autocast=False).generate(prompts, long)
    stops = tuple(sorted({o.text[4:6] for o in plain.outputs[:2]}))
    params = SamplingParams(
        max_new_tokens=16, temperature=0.0, stop=stops, include_stop_str=include
    )
    reference = HFGenerator(model, tokenizer, autocast=False).generate(prompts, params)
    batch = engine.generate(prompts, params)
    assert summary(batch) == summary(reference)
    assert "stop" in {o.finish_reason for o in batch}
    # eos: a token the model emits early is declared eos for both backends.
    eos = [plain.outputs[0].response_ids[3]]
    hf_eos = HFGenerator(model, tokenizer, autocast=False, eos_token_ids=eos)
    saved = engine.eos_token_ids
    engine.eos_token_ids = frozenset(eos)
    try:
        ours = engine.generate(prompts, long)
    finally:
        engine.eos_token_ids = saved
    assert summary(ours) == summary(hf_eos.generate(prompts, long))
    assert "eos" in {o.finish_reason for o in ours}


def test_logprobs_are_the_engines_sampling_distribution(engine, model, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=0.7, seed=4)
    batch = engine.generate(prompts, params, 2)
    for out in batch:
        assert out.logprobs is not None and len(out.logprobs) == len(out.response_ids)
        expected = sampled_token_logprobs(model, out, temperature=0.7)
        torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=2e-3, rtol=2e-3)


def test_prompt_randomness_is_keyed(engine, prompts):
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=9)
    full = engine.generate(prompts, params, 3)
    alone = engine.generate([prompts[2]], params, 3, keys=[2])
    assert [o.response_ids for o in alone] == [o.response_ids for o in full if o.group == 2]
    assert len({tuple(o.response_ids) for o in full}) > 6  # sampling, not greedy
    again = engine.generate(prompts, params, 3)
    assert summary(again) == summary(full)
    assert request_seed(9, 2) != request_seed(9, 3) != request_seed(10, 2)


def test_sync_weights_in_memory(engine, tokenizer, prompts):
    trained = build_tiny_model(tokenizer, seed=5, **SHAPE)
    expected = HFGenerator(trained, tokenizer, autocast=False).generate(prompts, GREEDY)
    original = build_tiny_model(tokenizer, seed=0, **SHAPE)
    try:
        engine.sync_weights(trained)
        assert summary(engine.generate(prompts, GREEDY)) == summary(expected)
    finally:  # a state dict with wrapper prefixes restores the original for other tests
        engine.sync_weights({f"_orig_mod.{k}": v for k, v in original.state_dict().items()})
    reference = HFGenerator(original, tokenizer, autocast=False).generate(prompts, GREEDY)
    assert summary(engine.generate(prompts, GREEDY)) == summary(reference)
