"""Chunked token log-probs must equal the naive full log-softmax, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from oreal.batch import pad_rollouts
from oreal.models import (
    autocast_context,
    compact_response_mask,
    naive_token_logprobs,
    response_positions,
    token_logprobs,
)
from oreal.models.tiny import build_tiny_model


def make_batch(vocab: int, pad: int):
    """Ragged prompts/responses (including an empty response), right-padded."""
    gen = torch.Generator().manual_seed(3)
    sizes = [(5, 7), (9, 3), (3, 12), (6, 0)]
    pairs = [
        (
            torch.randint(4, vocab, (p,), generator=gen).tolist(),
            torch.randint(4, vocab, (r,), generator=gen).tolist(),
        )
        for p, r in sizes
    ]
    return pad_rollouts(pairs, pad)


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("with_entropy", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
def test_chunked_matches_naive_values_and_grads(tokenizer, tied, with_entropy, chunk_size):
    model = build_tiny_model(tokenizer, seed=1, tie_word_embeddings=tied).train()
    batch = make_batch(len(tokenizer), tokenizer.pad_token_id)
    weights = torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(0))

    def loss(fn, **kw):
        model.zero_grad(set_to_none=True)
        lp, ent = fn(
            model,
            batch.input_ids,
            batch.attention_mask,
            batch.response_mask,
            with_entropy=with_entropy,
            **kw,
        )
        total = (lp * weights).sum() + (ent.sum() * 0.3 if ent is not None else 0.0)
        total.backward()
        return lp.detach(), (ent.detach() if ent is not None else None), grads(model)

    lp, ent, g = loss(token_logprobs, chunk_size=chunk_size)
    ref_lp, ref_ent, ref_g = loss(naive_token_logprobs)

    assert lp.shape == batch.loss_mask.shape
    torch.testing.assert_close(lp, ref_lp, rtol=1e-5, atol=1e-5)
    assert torch.all(lp[~batch.loss_mask] == 0) and torch.all(lp[batch.loss_mask] < 0)
    if with_entropy:
        assert ent is not None and ref_ent is not None
        torch.testing.assert_close(ent, ref_ent, rtol=1e-5, atol=1e-5)
    else:
        assert ent is None
    assert g.keys() == ref_g.keys() and len(g) > 0
    for name in g:
        torch.testing.assert_close(g[name], ref_g[name], rtol=1e-4, atol=1e-4, msg=name)


def test_values_match_the_definition_token_by_token(tokenizer):
    """Independent check of the layout: logits at t-1 score token t."""
    model = build_tiny_model(tokenizer, seed=2)
    batch = make_batch(len(tokenizer), tokenizer.pad_token_id)
    with torch.no_grad():
        lp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    for row in range(batch.input_ids.shape[0]):
        positions = batch.response_mask[row].nonzero().flatten().tolist()
        for j, t in enumerate(positions):
            expected = torch.log_softmax(logits[row, t - 1], -1)[batch.input_ids[row, t]]
            assert abs(lp[row, j].item() - expected.item()) < 1e-5


def test_temperature_and_no_grad_path(tokenizer):
    model = build_tiny_model(tokenizer, seed=4)
    batch = make_batch(len(tokenizer), tokenizer.pad_token_id)
    args = (model, batch.input_ids, batch.attention_mask, batch.response_mask)
    with torch.no_grad():
        lp, ent = token_logprobs(*args, temperature=0.7, with_entropy=True, chunk_size=3)
        ref_lp, ref_ent = naive_token_logprobs(*args, temperature=0.7, with_entropy=True)
        plain, _ = token_logprobs(*args)
    torch.testing.assert_close(lp, ref_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(lp, plain)  # temperature is really applied


def test_bf16_autocast_is_close_and_fp32_out(tokenizer):
    model = build_tiny_model(tokenizer, seed=5)
    batch = make_batch(len(tokenizer), tokenizer.pad_token_id)
    args = (model, batch.input_ids, batch.attention_mask, batch.response_mask)
    with torch.no_grad():
        ref, _ = token_logprobs(*args)
        with autocast_context("cpu", enabled=True):
            low, _ = token_logprobs(*args)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1


def test_non_contiguous_mask_and_position_zero(tokenizer):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    mask = torch.tensor([[0, 1, 0, 1, 1, 0]], dtype=torch.bool)
    index, valid = response_positions(mask)
    assert index.tolist() == [[1, 3, 4]] and valid.all()
    assert compact_response_mask(mask).shape == (1, 3)
    model = build_tiny_model(tokenizer, seed=6)
    attn = torch.ones_like(ids)
    with torch.no_grad():
        lp, _ = token_logprobs(model, ids, attn, mask, chunk_size=2)
        ref, _ = naive_token_logprobs(model, ids, attn, mask)
    torch.testing.assert_close(lp, ref)
    with pytest.raises(ValueError, match="position 0"):
        token_logprobs(model, ids, attn, torch.ones_like(mask))
    with pytest.raises(ValueError):
        token_logprobs(model, ids, attn, mask, chunk_size=0)
