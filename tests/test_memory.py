"""What keeps the demo's memory down computes what it computed before.

- the fused head skips the entropy pass when the entropy is only logged and widens the head's
  gradient block by block: the same numbers, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from oreal.models import fused_head
from oreal.train.config import OrealConfig

TinyConfig = Callable[..., OrealConfig]


def fused_head_run(*, with_entropy: bool, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """log-probs and the hidden/weight gradients of a loss on the log-probs only."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(70, 16, generator=gen).requires_grad_(True)
    weight = (torch.randn(300, 16, generator=gen) * 0.5).requires_grad_(True)
    targets = torch.randint(0, 300, (70,), generator=gen)
    coefficients = torch.randn(70, generator=gen)
    logp, _ = fused_head.FusedHeadLogprobs.apply(
        hidden, weight, targets, 1 / 0.7, with_entropy, 32, torch.bfloat16, False
    )
    (logp * coefficients).sum().backward()
    assert hidden.grad is not None and weight.grad is not None
    return logp.detach(), hidden.grad, weight.grad


def test_an_entropy_only_logged_changes_no_gradient():
    """With the entropy computed but detached (the update logs it), the backward takes the
    entropy-free path: bit-identical to not computing the entropy at all."""
    for got, expected in zip(
        fused_head_run(with_entropy=True), fused_head_run(with_entropy=False), strict=True
    ):
        assert torch.equal(got, expected)


def test_the_head_gradient_is_widened_block_by_block_exactly(monkeypatch):
    monkeypatch.setattr(fused_head, "_WIDEN_ROWS", 7)  # 300 rows: the last block is partial
    blocked = fused_head_run(with_entropy=False, seed=1)
    monkeypatch.setattr(fused_head, "_WIDEN_ROWS", 10**9)  # one block: a plain widened add
    whole = fused_head_run(with_entropy=False, seed=1)
    for got, expected in zip(blocked, whole, strict=True):
        assert torch.equal(got, expected)
