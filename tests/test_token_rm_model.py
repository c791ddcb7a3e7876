"""The token RM module on tiny backbones: zero-head start, learning a deciding token, LoRA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from oreal.batch import TrainBatch, pad_rollouts
from oreal.models import build_tiny_model, build_tiny_tokenizer
from oreal.models.reference import FrozenReference
from oreal.runtime import Runtime
from oreal.token_rm import (
    TokenRewardModel,
    build_token_rm,
    oreal_token_weights,
    roc_auc,
    sequence_logits,
    token_rm_loss,
    token_rm_update,
)

TOKENIZER = build_tiny_tokenizer()
FILLER = TOKENIZER.convert_tokens_to_ids(list("abcdefgh"))
DECIDER = TOKENIZER.convert_tokens_to_ids("7")
PROMPT = TOKENIZER.convert_tokens_to_ids(list("Q:"))
LENGTH = 10


def tiny_policy(seed: int = 0) -> torch.nn.Module:
    return build_tiny_model(TOKENIZER, seed=seed, hidden=32, layers=2, heads=4, kv_heads=2)


def deciding_token_batch(
    size: int, generator: torch.Generator
) -> tuple[TrainBatch, torch.Tensor, torch.Tensor]:
    """Random filler responses; odd rows are correct and have '7' at a random position."""
    pairs, labels, where = [], [], []
    for row in range(size):
        picks = torch.randint(len(FILLER), (LENGTH,), generator=generator)
        response = [FILLER[int(i)] for i in picks]
        position = int(torch.randint(LENGTH, (1,), generator=generator))
        if row % 2:
            response[position] = DECIDER
        pairs.append((PROMPT, response))
        labels.append(row % 2)
        where.append(position)
    return pad_rollouts(pairs, TOKENIZER.pad_token_id), torch.tensor(labels), torch.tensor(where)


def test_head_starts_at_zero_and_the_first_step_moves_only_the_head() -> None:
    rm = build_token_rm(tiny_policy())
    assert isinstance(rm, TokenRewardModel)
    assert torch.equal(rm.head.weight, torch.zeros_like(rm.head.weight))
    assert rm.head.bias is None and rm.head.out_features == 1
    tensors, labels, _ = deciding_token_batch(8, torch.Generator().manual_seed(0))
    before = {n: p.detach().clone() for n, p in rm.named_parameters()}
    # weight_decay=0: AdamW's decoupled decay would shrink the backbone even with zero grads.
    optimizer = torch.optim.AdamW(rm.trainable_parameters(), lr=1e-2, weight_decay=0.0)
    logits = rm(tensors.input_ids, tensors.attention_mask, tensors.response_mask)
    assert torch.equal(logits, torch.zeros_like(logits))
    token_rm_loss(logits, tensors.loss_mask, labels, num_seqs=8).backward()
    backbone_grads = [p.grad for n, p in rm.named_parameters() if not n.startswith("head")]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in backbone_grads)
    assert torch.count_nonzero(rm.head.weight.grad) > 0
    rm.zero_grad()
    token_rm_update(rm, optimizer, tensors, labels.float(), micro_batch_size=3, autocast=False)
    for name, param in rm.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == name.startswith("head"), name


def test_update_returns_pre_update_scores_and_is_micro_batch_invariant() -> None:
    tensors, labels, _ = deciding_token_batch(6, torch.Generator().manual_seed(1))
    results = []
    for micro in (1, 4, 6):
        rm = build_token_rm(tiny_policy())
        torch.nn.init.normal_(rm.head.weight, std=0.5, generator=torch.Generator().manual_seed(2))
        expected = rm(tensors.input_ids, tensors.attention_mask, tensors.response_mask).detach()
        optimizer = torch.optim.SGD(rm.trainable_parameters(), lr=0.1)
        logits, parts = token_rm_update(
            rm, optimizer, tensors, labels.float(), micro_batch_size=micro, autocast=False
        )
        assert torch.allclose(logits, expected, atol=1e-5)  # the RM *before* its update
        results.append((parts["rm_loss"], rm.head.weight.detach().clone()))
    for loss, head in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-5)
        assert torch.allclose(head, results[0][1], atol=1e-6)


class OneOfTwoRanks(Runtime):
    """Rank ``rank`` of a 2-rank world whose collectives report the global sequence count S
    (a stand-in for gloo: the end-to-end 2-process test is tests/test_train_distributed.py)."""

    def __init__(self, rank: int, global_seqs: int) -> None:
        super().__init__(rank=rank, world_size=2)
        self.global_seqs = global_seqs

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if op == "max":
            return tensor.clone()  # no placeholder passes are needed without sharding
        if tensor.dtype == torch.long:
            return torch.full_like(tensor, self.global_seqs)
        return tensor.clone()


def test_two_ranks_with_uneven_batches_average_to_the_full_batch_gradient() -> None:
    """Rank 0 keeps 4 rows, rank 1 keeps 2: with S = 6 global and the backend's gradient mean
    over R = 2 ranks, the update equals one process on all 6 rows."""
    tensors, labels, _ = deciding_token_batch(6, torch.Generator().manual_seed(3))

    def head_gradient(rows: slice, runtime: Runtime | None = None) -> torch.Tensor:
        rm = build_token_rm(tiny_policy())
        torch.nn.init.normal_(rm.head.weight, std=0.5, generator=torch.Generator().manual_seed(4))
        optimizer = torch.optim.SGD(rm.trainable_parameters(), lr=1.0)
        before = rm.head.weight.detach().clone()
        part = tensors[rows]
        # No clipping: a backend clips the all-reduced gradient, not each rank's share.
        token_rm_update(
            rm,
            optimizer,
            part,
            labels[rows].float(),
            micro_batch_size=3,
            grad_clip=None,
            runtime=runtime,
        )
        return before - rm.head.weight.detach()  # = the gradient, with SGD at lr 1

    full = head_gradient(slice(0, 6))
    ranks = [
        head_gradient(rows, OneOfTwoRanks(rank, global_seqs=6))
        for rank, rows in enumerate((slice(0, 4), slice(4, 6)))
    ]
    assert torch.allclose((ranks[0] + ranks[1]) / 2, full, atol=1e-6)
    # Counting only this rank's rows (S = 4) would over-weight them: the test can fail.
    alone = head_gradient(slice(0, 4), OneOfTwoRanks(0, global_seqs=4))
    assert not torch.allclose((alone + ranks[1]) / 2, full, atol=1e-6)


@pytest.mark.parametrize("position", ["token", "previous"])
def test_rm_learns_the_deciding_token(position: str) -> None:
    """With ``token`` the deciding token itself carries the jump in h_t; with ``previous``
    (the release: the state that predicted the token) the token after it does."""
    rm = build_token_rm(tiny_policy())
    optimizer = torch.optim.AdamW(rm.trainable_parameters(), lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    tensors, labels, _ = deciding_token_batch(64, torch.Generator().manual_seed(99))
    args = (tensors.input_ids, tensors.attention_mask, tensors.response_mask)
    with torch.no_grad():
        initial = rm(*args, score_position=position)
    assert roc_auc(sequence_logits(initial, tensors.loss_mask), labels) == 0.5
    for _ in range(30):
        batch, batch_labels, _ = deciding_token_batch(32, generator)
        token_rm_update(
            rm, optimizer, batch, batch_labels.float(), micro_batch_size=32, score_position=position
        )
    tensors, labels, where = deciding_token_batch(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        logits = rm(
            tensors.input_ids,
            tensors.attention_mask,
            tensors.response_mask,
            score_position=position,
        )
    auc = roc_auc(sequence_logits(logits, tensors.loss_mask), labels)
    assert auc is not None and auc > 0.95, auc

    positive = labels.bool()
    weights = oreal_token_weights(logits, tensors.loss_mask, positive).weights
    shift = 0 if position == "token" else 1
    first = where + shift  # the first token whose h_t has seen the deciding token
    steps = torch.arange(LENGTH)[None, :]
    credited = (steps >= first[:, None]) & positive[:, None]
    before = (steps < first[:, None]) & positive[:, None]
    # Credit goes to the tokens whose score saw the deciding token, not to the prefix before.
    assert weights[credited].mean() > weights[before].mean() + 0.2
    # The largest rise of the token logit h_t happens exactly there.
    jump = (logits[:, 1:] - logits[:, :-1]).argmax(dim=1) + 1
    rows = positive & (where > 0) & (first < LENGTH)
    assert (jump[rows] == first[rows]).float().mean() >= 0.9


def test_previous_score_position_is_the_release_shift_by_one() -> None:
    rm = build_token_rm(tiny_policy())
    torch.nn.init.normal_(rm.head.weight, generator=torch.Generator().manual_seed(3))
    tensors, _, _ = deciding_token_batch(4, torch.Generator().manual_seed(4))
    args = (tensors.input_ids, tensors.attention_mask, tensors.response_mask)
    with torch.no_grad():
        own = rm(*args, score_position="token")
        previous = rm(*args, score_position="previous")
        # The release's first response logit comes from the last prompt token.
        prompt_only = pad_rollouts([(PROMPT[:1], PROMPT[1:])] * 4, TOKENIZER.pad_token_id)
        last_prompt = rm(
            prompt_only.input_ids,
            prompt_only.attention_mask,
            prompt_only.response_mask,
            score_position="token",
        )
    assert torch.allclose(previous[:, 1:], own[:, :-1], atol=1e-5)
    assert torch.allclose(previous[:, 0], last_prompt[:, 0], atol=1e-5)


def test_lora_backbone_without_peft_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'oreal\[peft\]'"):
        build_token_rm(tiny_policy(), backbone="lora")


def test_lora_rm_shares_the_frozen_reference() -> None:
    pytest.importorskip("peft")
    policy = tiny_policy()
    frozen_reference = FrozenReference.copy_of(tiny_policy())
    reference = frozen_reference.module
    rm = build_token_rm(policy, backbone="lora", reference=frozen_reference)
    tensors, labels, _ = deciding_token_batch(6, torch.Generator().manual_seed(5))
    ids, attention = tensors.input_ids, tensors.attention_mask
    with torch.no_grad():
        reference_logits = reference(input_ids=ids, attention_mask=attention).logits
    trainable = dict(rm.trainable_state_dict())
    assert "head.weight" in trainable and any("lora" in name for name in trainable)
    assert all("lora" in name or name == "head.weight" for name in trainable)
    frozen = {n: p.detach().clone() for n, p in rm.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(rm.trainable_parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(3):  # the second step onwards moves the adapters (the head is non-zero)
        token_rm_update(rm, optimizer, tensors, labels.float(), micro_batch_size=6, autocast=False)
    for name, param in rm.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, frozen[name]), name
    moved = [n for n, p in rm.trainable_state_dict().items() if not torch.equal(p, trainable[n])]
    assert any("lora" in name for name in moved)
    with torch.no_grad(), frozen_reference.active() as module:  # how π_ref is scored
        unchanged = module(input_ids=ids, attention_mask=attention).logits
    with torch.no_grad():
        patched = reference(input_ids=ids, attention_mask=attention).logits
    assert torch.allclose(unchanged, reference_logits, atol=1e-6)
    assert not torch.allclose(patched, reference_logits, atol=1e-6)
    # A fresh RM on a fresh reference loads the trained tensors back exactly.
    again = build_token_rm(
        tiny_policy(), backbone="lora", reference=FrozenReference.copy_of(tiny_policy())
    )
    again.load_trainable_state_dict(rm.trainable_state_dict())
    with torch.no_grad():
        args = (ids, attention, tensors.response_mask)
        assert torch.equal(again(*args), rm(*args))


def test_backbone_from_another_checkpoint(tmp_path: Path) -> None:
    from oreal.models import save_tiny

    other = save_tiny(tmp_path / "other", seed=7)
    policy = tiny_policy()
    rm = build_token_rm(policy, name_or_path=str(other), tokenizer=TOKENIZER)
    loaded = dict(rm.backbone.named_parameters())
    key = next(iter(loaded))
    assert not torch.equal(loaded[key], dict(policy.model.named_parameters())[key])
    assert all(p.requires_grad for p in rm.parameters())
