"""HFGenerator: shapes, finish reasons, stop strings, determinism, seeding, KV cache use."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch

from oreal.batch import pad_rollouts
from oreal.models import enable_gradient_checkpointing, token_logprobs
from oreal.models.tiny import build_tiny_model
from oreal.rollout import Generator, HFGenerator, SamplingParams

GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)


@pytest.fixture
def model(tokenizer):
    return build_tiny_model(tokenizer, seed=0)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[str]:
    questions = ["1+1=", "What is 12*3-4? Put it in \\boxed{}.", "(2+3)*4="]
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]


class Script:
    """Forward hook on ``lm_head`` that forces token ``schedule[step]`` at each decoding step.

    ``schedule`` is one list for all rows or a ``{batch_row: list}`` dict; ``None`` entries leave
    the model's own choice; ``ban`` tokens are suppressed at every step. Counting hook calls also
    tells how many forward passes generation made.
    """

    def __init__(
        self,
        model,
        schedule: Sequence[int | None] | dict[int, Sequence[int | None]] = (),
        ban: Sequence[int] = (),
    ):
        self.schedule, self.ban, self.calls = schedule, list(ban), 0
        self.handle = model.lm_head.register_forward_hook(self)

    def __call__(self, module, args, output):
        logits = output.clone()
        if self.ban:
            logits[:, -1, self.ban] = -1e4
        rows = self.schedule if isinstance(self.schedule, dict) else {None: self.schedule}
        for row, plan in rows.items():
            if self.calls < len(plan) and plan[self.calls] is not None:
                target = slice(None) if row is None else row
                logits[target, -1, plan[self.calls]] = 1e4
        self.calls += 1
        return logits

    def remove(self) -> None:
        self.handle.remove()


def char_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture
def scripted(model) -> Iterator[type[Script]]:
    hooks: list[Script] = []

    def make(*args, **kwargs) -> Script:
        hooks.append(Script(model, *args, **kwargs))
        return hooks[-1]

    yield make  # type: ignore[misc]
    for hook in hooks:
        hook.remove()


def test_shapes_groups_and_truncation(model, tokenizer, prompts, scripted):
    scripted(ban=[tokenizer.eos_token_id])  # never ends on its own: all rows hit the limit
    gen = HFGenerator(model, tokenizer, autocast=False)
    batch = gen.generate(prompts, GREEDY, num_return_sequences=2)
    assert isinstance(gen, Generator)
    assert len(batch) == 6 and batch.num_prompts == 3 and batch.k == 2
    assert batch.group_index == [0, 0, 1, 1, 2, 2]
    assert [o.sample for o in batch] == [0, 1, 0, 1, 0, 1]
    for out in batch:
        assert out.prompt == prompts[out.group]
        assert out.prompt_ids == char_ids(tokenizer, prompts[out.group])
        assert len(out.response_ids) == GREEDY.max_new_tokens
        assert out.truncated and out.finish_reason == "length"
        assert out.text == tokenizer.decode(out.response_ids)
        assert tokenizer.pad_token_id not in out.response_ids
    assert batch.group_index == [0, 0, 1, 1, 2, 2]
    assert batch.stats["generated_tokens"] == 6 * GREEDY.max_new_tokens


def test_forced_eos_is_not_truncated(model, tokenizer, prompts, scripted):
    a, b = char_ids(tokenizer, "42")
    eos = tokenizer.eos_token_id
    scripted(schedule=[a, b, eos])
    # eos on the very last allowed token still counts as a finished response
    params = SamplingParams(max_new_tokens=3, temperature=0.7, seed=1)
    batch = HFGenerator(model, tokenizer, autocast=False).generate(prompts, params, 2)
    for out in batch:
        assert out.response_ids == [a, b, eos]
        assert out.text == "42"
        assert out.finish_reason == "eos" and not out.truncated


def test_rows_ending_early_are_cut_without_padding(model, tokenizer, prompts, scripted):
    # Batch rows are sorted longest prompt first: row 0 is prompt 1 and it alone ends at step 2;
    # the others keep going, so row 0 is padded after its eos inside the batch.
    eos = tokenizer.eos_token_id
    scripted(schedule={0: [None, eos]}, ban=[eos])
    batch = HFGenerator(model, tokenizer, autocast=False).generate(prompts, GREEDY)
    ended, *others = batch.outputs[1], batch.outputs[0], batch.outputs[2]
    assert len(ended.response_ids) == 2 and ended.response_ids[-1] == eos
    assert ended.finish_reason == "eos" and not ended.truncated
    assert all(o.truncated and len(o.response_ids) == GREEDY.max_new_tokens for o in others)
    assert all(tokenizer.pad_token_id not in o.response_ids for o in batch)


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_cut_text_and_stop_early(model, tokenizer, prompts, include, scripted):
    forced = char_ids(tokenizer, "12XY345678")
    script = scripted(schedule=forced, ban=[tokenizer.eos_token_id])
    params = SamplingParams(
        max_new_tokens=10, temperature=0.0, stop=("XY", "7"), include_stop_str=include
    )
    batch = HFGenerator(model, tokenizer, autocast=False).generate(prompts[:1], params)
    out = batch.outputs[0]
    assert out.finish_reason == "stop" and not out.truncated
    assert out.response_ids == char_ids(tokenizer, "12XY")
    assert out.text == ("12XY" if include else "12")
    # transformers' stop_strings criterion really ended decoding after the 4th token
    assert script.calls == 4


def test_stop_string_as_single_str_is_a_tuple():
    assert SamplingParams(stop="</answer>").stop == ("</answer>",)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0.0)


def test_greedy_is_deterministic_and_batch_invariant(model, tokenizer, prompts):
    gen = HFGenerator(model, tokenizer, autocast=False)
    first = gen.generate(prompts, GREEDY, 2)
    again = gen.generate(prompts, GREEDY, 2)
    assert [o.response_ids for o in first] == [o.response_ids for o in again]
    # the same prompt alone (no left padding) and in micro-batches of 1 gives the same tokens
    small = HFGenerator(model, tokenizer, autocast=False, max_batch_size=1)
    alone = [small.generate([p], GREEDY).outputs[0].response_ids for p in prompts]
    assert alone == [o.response_ids for o in first if o.sample == 0]
    by_group = [[o.response_ids for o in first if o.group == g] for g in range(len(prompts))]
    assert all(a == b for a, b in by_group)


def test_seeded_sampling_is_reproducible(model, tokenizer, prompts):
    gen = HFGenerator(model, tokenizer, autocast=False)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_k=20, top_p=0.95, seed=7)
    state = torch.get_rng_state()
    first = [o.response_ids for o in gen.generate(prompts, params, 4)]
    assert torch.equal(state, torch.get_rng_state())  # a seeded call leaves global RNG alone
    second = [o.response_ids for o in gen.generate(prompts, params, 4)]
    other = [
        o.response_ids
        for o in gen.generate(prompts, SamplingParams(**{**params.__dict__, "seed": 8}), 4)
    ]
    assert first == second
    assert first != other
    assert len({tuple(r) for r in first}) > 1  # sampling, not greedy


def test_gradient_checkpointing_keeps_kv_cache(model, tokenizer, prompts):
    reference = HFGenerator(model, tokenizer, autocast=False).generate(prompts, GREEDY)
    enable_gradient_checkpointing(model)
    assert getattr(model, "is_activation_checkpointing", False) or model.is_gradient_checkpointing
    model.config.use_cache = False  # what training setups often do; generation must override it
    model.train()
    lengths: list[int] = []
    hook = model.model.layers[0].register_forward_hook(
        lambda module, args, output: lengths.append(args[0].shape[1])
    )
    try:
        out = HFGenerator(model, tokenizer, autocast=False).generate(prompts[:1], GREEDY)
    finally:
        hook.remove()
    width = len(out.outputs[0].prompt_ids)
    # one prefill over the prompt, then one token per step: the KV cache was used
    assert lengths[0] == width and set(lengths[1:]) == {1}
    assert len(lengths) == len(out.outputs[0].response_ids)
    assert model.training  # restored after generation
    assert out.outputs[0].response_ids == reference.outputs[0].response_ids


def test_bf16_autocast_generation_runs(model, tokenizer, prompts):
    batch = HFGenerator(model, tokenizer, autocast=True).generate(prompts, GREEDY, 2)
    assert all(0 < len(o.response_ids) <= GREEDY.max_new_tokens for o in batch)
    assert next(model.parameters()).dtype == torch.float32  # master weights untouched


def test_rollouts_feed_training_tensors(model, tokenizer, prompts):
    batch = HFGenerator(model, tokenizer, autocast=False).generate(prompts, GREEDY, 2)
    tensors = pad_rollouts([(o.prompt_ids, o.response_ids) for o in batch], tokenizer.pad_token_id)
    for row, out in enumerate(batch):
        n = len(out.prompt_ids) + len(out.response_ids)
        assert tensors.input_ids[row, :n].tolist() == out.prompt_ids + out.response_ids
        assert tensors.input_ids[row][tensors.response_mask[row]].tolist() == out.response_ids
        assert int(tensors.loss_mask[row].sum()) == len(out.response_ids)
    # Scoring the rollouts agrees with how they were generated: greedy tokens are the argmax.
    with torch.no_grad():
        lp, ent = token_logprobs(
            model,
            tensors.input_ids,
            tensors.attention_mask,
            tensors.response_mask,
            with_entropy=True,
        )
        logits = model(input_ids=tensors.input_ids, attention_mask=tensors.attention_mask).logits
    best = torch.log_softmax(logits.float(), -1).max(-1).values
    for row, out in enumerate(batch):
        start = len(out.prompt_ids) - 1
        expected = best[row, start : start + len(out.response_ids)]
        torch.testing.assert_close(lp[row, : len(out.response_ids)], expected)
    assert ent is not None and bool((ent[tensors.loss_mask] > 0).all())


def test_rejects_bad_arguments(model, tokenizer):
    gen = HFGenerator(model, tokenizer)
    with pytest.raises(TypeError):
        gen.generate("a single prompt", GREEDY)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        gen.generate(["x"], GREEDY, num_return_sequences=0)
    with pytest.raises(ValueError):
        HFGenerator(model, tokenizer, max_batch_size=0)
