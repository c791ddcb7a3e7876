"""Head and embedding gradients added straight into ``.grad`` (oreal.models.direct_grads)
equal autograd's, and the path stays off wherever autograd's gradient is needed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oreal.batch import pad_rollouts
from oreal.models import autocast_context, fused_head, logprobs, token_logprobs
from oreal.models.direct_grads import (
    accumulates_into_grad,
    add_into_grad,
    embed,
    gradients_into_grad,
)
from oreal.models.tiny import build_tiny_model


def micro_batches(vocab: int, pad: int):
    """Two micro-batches of K=3 rollouts of one prompt each (shared-prefix layouts)."""
    gen = torch.Generator().manual_seed(5)
    batches = []
    for prompt_length in (6, 9):
        prompt = torch.randint(4, vocab, (prompt_length,), generator=gen).tolist()
        pairs = [(prompt, torch.randint(4, vocab, (n,), generator=gen).tolist()) for n in (4, 7, 2)]
        batches.append(pad_rollouts(pairs, pad))
    return batches


def accumulated_grads(model, batches, *, direct: bool, autocast: bool, chunk_size: int):
    """Gradients of a loss on log-probs and entropies, summed over micro-batches."""
    model.zero_grad(set_to_none=True)
    with gradients_into_grad() if direct else torch.enable_grad():
        for index, batch in enumerate(batches):
            coefficients = torch.randn(
                batch.loss_mask.shape, generator=torch.Generator().manual_seed(index)
            )
            with autocast_context("cpu", autocast):
                logp, entropy = token_logprobs(
                    model,
                    batch.input_ids,
                    batch.attention_mask,
                    batch.response_mask,
                    with_entropy=True,
                    chunk_size=chunk_size,
                )
            ((logp * coefficients).sum() + 0.2 * entropy.sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("autocast", [False, True])
def test_direct_gradients_equal_autograds(tokenizer, tied, autocast, monkeypatch):
    model = build_tiny_model(tokenizer, seed=2, tie_word_embeddings=tied).train()
    batches = micro_batches(len(tokenizer), tokenizer.pad_token_id)
    kwargs = {"autocast": autocast, "chunk_size": 5}
    through_autograd = accumulated_grads(model, batches, direct=False, **kwargs)
    added: list[int] = []  # sizes of the gradients added straight into .grad

    def counting(weight: torch.Tensor, part: torch.Tensor) -> None:
        added.append(part.shape[0])
        add_into_grad(weight, part)

    monkeypatch.setattr(fused_head, "add_into_grad", counting)
    embedded = []
    monkeypatch.setattr(logprobs, "embed", lambda m, ids: embedded.append(1) or embed(m, ids))
    direct = accumulated_grads(model, batches, direct=True, **kwargs)
    assert len(added) == 2 * 3 and len(embedded) == 2  # 16 and 19 scored tokens in chunks of 5
    assert direct.keys() == through_autograd.keys()
    for name, grad in direct.items():
        # The same terms summed in another order: equal up to fp32 rounding.
        torch.testing.assert_close(grad, through_autograd[name], rtol=1e-5, atol=1e-6, msg=name)
    if not tied:  # only looked-up rows of an untied embedding have a gradient (a row's last
        # token predicts nothing scored: its row may have none)
        looked_up = torch.zeros(len(tokenizer), dtype=torch.bool)
        for batch in batches:
            looked_up[batch.input_ids[batch.attention_mask.bool()]] = True
        rows_with_grad = direct["model.embed_tokens.weight"].abs().sum(dim=1) > 0
        assert rows_with_grad.any() and not (rows_with_grad & ~looked_up).any()


def test_the_direct_path_is_taken_only_where_it_is_safe(tokenizer):
    model = build_tiny_model(tokenizer, seed=0)
    weight = model.get_input_embeddings().weight
    assert not accumulates_into_grad(weight)  # outside the context
    with gradients_into_grad():
        assert accumulates_into_grad(weight)
        with torch.no_grad():
            assert not accumulates_into_grad(weight)  # nothing will run backward
        frozen = nn.Parameter(weight.detach().clone(), requires_grad=False)
        assert not accumulates_into_grad(frozen)
        hooked = nn.Parameter(weight.detach().clone())
        hooked.register_post_accumulate_grad_hook(lambda p: None)
        assert not accumulates_into_grad(hooked)  # a hook expects AccumulateGrad
        assert not accumulates_into_grad(weight * 2)  # not a leaf
    assert not accumulates_into_grad(weight)  # the context restored the flag


def test_the_embedding_keeps_padding_rows_and_graph_building_backwards_autograds():
    torch.manual_seed(0)
    plain = nn.Embedding(11, 4, padding_idx=0)
    ids = torch.tensor([[0, 3, 3, 5], [7, 0, 3, 1]])
    upstream = torch.randn(2, 4, 4)
    (plain(ids) * upstream).sum().backward()
    expected = plain.weight.grad.clone()
    assert torch.count_nonzero(expected[0]) == 0
    plain.weight.grad = None
    with gradients_into_grad():
        embeddings = embed(plain, ids)
        assert embeddings is not None
        torch.testing.assert_close(embeddings, plain(ids))
        (embeddings * upstream).sum().backward()
        torch.testing.assert_close(plain.weight.grad, expected)
        # A backward that builds a graph gets the gradient back through autograd.
        (grad,) = torch.autograd.grad(
            (embed(plain, ids) * upstream).sum(), plain.weight, create_graph=True
        )
        torch.testing.assert_close(grad, expected)
        torch.testing.assert_close(plain.weight.grad, expected)  # not added a second time
        # Embeddings it does not know (a subclass may scale) run as themselves.
        assert embed(type("Scaled", (nn.Embedding,), {})(11, 4), ids) is None
