"""Per-token losses, KL estimators and entropy on hand-picked values."""

from __future__ import annotations

import math

import pytest
import torch

from oreal.algorithms import (
    LossNormalizers,
    aggregate,
    algorithm_params,
    compute_advantages,
    compute_policy_loss,
    entropy_from_logits,
    kl_penalty,
    pg_loss,
    ppo_clip_loss,
    sft_loss,
)

# Ratios ρ and advantages A, one token each.
RATIOS = [1.5, 0.5, 0.5, 1.5, 5.0, 1.1]
ADVS = [1.0, 1.0, -1.0, -1.0, -1.0, 1.0]


def _ppo(**kw: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    old = torch.zeros(1, len(RATIOS))
    lp = torch.log(torch.tensor([RATIOS])).requires_grad_(True)
    loss, info = ppo_clip_loss(lp, torch.tensor([ADVS]), old, **kw)  # type: ignore[arg-type]
    loss.sum().backward()
    assert lp.grad is not None
    return loss.detach()[0], info.clipped[0], lp.grad[0]


def test_ppo_clip_symmetric() -> None:
    # ℓ = -min(ρA, clip(ρ, 0.8, 1.2)A):
    # ρ=1.5,A=+1: -min(1.5, 1.2) = -1.2 (clipped)   ρ=0.5,A=+1: -min(0.5, 0.8) = -0.5
    # ρ=0.5,A=-1: -min(-0.5,-0.8) = 0.8 (clipped)    ρ=1.5,A=-1: -min(-1.5,-1.2) = 1.5
    # ρ=5,A=-1: 5 (no dual clip)                      ρ=1.1,A=+1: -1.1
    loss, clipped, grad = _ppo(clip_eps_low=0.2, clip_eps_high=0.2)
    torch.testing.assert_close(loss, torch.tensor([-1.2, -0.5, 0.8, 1.5, 5.0, -1.1]))
    assert clipped.tolist() == [True, False, True, False, False, False]
    # Clipped tokens get no gradient; unclipped ones get -A·ρ (d/dlogπ of -A·exp(logπ)).
    torch.testing.assert_close(grad, torch.tensor([0.0, -0.5, 0.0, 1.5, 5.0, -1.1]))


def test_ppo_clip_higher() -> None:
    # ε_high = 0.28: ρ=1.5,A=+1 -> -1.28; ε_low stays 0.2 for ρ=0.5,A=-1 -> 0.8.
    loss, clipped, _ = _ppo(clip_eps_low=0.2, clip_eps_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([-1.28, -0.5, 0.8, 1.5, 5.0, -1.1]))
    assert clipped.tolist() == [True, False, True, False, False, False]


def test_ppo_dual_clip_bounds_negative_advantage_only() -> None:
    # c = 3, A < 0 only: ℓ ← min(ℓ, -c·A) = min(ℓ, 3). Only ρ=5,A=-1 changes: 5 -> 3.
    old = torch.zeros(1, len(RATIOS))
    lp = torch.log(torch.tensor([RATIOS]))
    loss, info = ppo_clip_loss(lp, torch.tensor([ADVS]), old, clip_eps_high=0.2, dual_clip=3.0)
    torch.testing.assert_close(loss[0], torch.tensor([-1.2, -0.5, 0.8, 1.5, 3.0, -1.1]))
    assert info.dual_clipped[0].tolist() == [False, False, False, False, True, False]
    # A large ratio on a positive advantage is never dual-clipped.
    pos, info = ppo_clip_loss(torch.log(torch.tensor([[10.0]])), torch.tensor([1.0]),
                              torch.zeros(1, 1), dual_clip=3.0)  # fmt: skip
    assert float(pos) == pytest.approx(-1.28) and not info.dual_clipped.any()
    with pytest.raises(ValueError):
        ppo_clip_loss(lp, torch.tensor([ADVS]), old, dual_clip=1.0)


def test_on_policy_ratio_is_one_and_gradient_is_reinforce() -> None:
    # old_logprobs=None: ρ = exp(logπ - sg[logπ]) = 1, ∇ℓ = -A·∇logπ (REINFORCE).
    lp = torch.log(torch.tensor([[0.3, 0.6]])).requires_grad_(True)
    a = torch.tensor([2.0])
    loss = pg_loss(lp, a)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-2.0, -2.0]]))
    loss.sum().backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-2.0, -2.0]]))
    clip_loss, info = ppo_clip_loss(lp, a)
    torch.testing.assert_close(clip_loss.detach(), loss.detach())
    assert not info.clipped.any()


def test_sft_loss_is_nll() -> None:
    lp = torch.log(torch.tensor([[0.5, 0.25]]))
    torch.testing.assert_close(sft_loss(lp), torch.tensor([[math.log(2), math.log(4)]]))
    # RAFT's advantage weights it: A = 1 keeps the NLL, A = 0 contributes nothing.
    both = torch.cat([lp, lp])
    weighted = sft_loss(both, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(weighted, torch.tensor([[math.log(2), math.log(4)], [0.0, 0.0]]))


def test_raft_matches_minimal_rl_by_hand() -> None:
    """Minimal-RL's RAFT (``policy_loss=vanilla``): -A·log π averaged over *all* tokens of the
    step, wrong rows included with A = 0, plus β·k3 and -α·H over the same tokens."""
    # Row 0 correct (2 tokens), row 1 wrong (3 tokens): N = 5 tokens in the denominator.
    lp = torch.log(torch.tensor([[0.5, 0.25, 1.0], [0.5, 0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.25, 1.0], [0.5, 0.25, 0.5]]))
    entropy = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    params = algorithm_params("raft")  # β = α = 0.001, rejected rows counted
    res = compute_advantages(params, torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))
    assert res.keep.all()
    norms = LossNormalizers.from_masks(mask)
    loss, parts = compute_policy_loss(
        params, logprobs=lp, response_mask=mask, advantages=res.advantages,
        normalizers=norms, ref_logprobs=ref, entropy=entropy,
    )  # fmt: skip
    ln2 = math.log(2)
    pg = (ln2 + 2 * ln2) / 5  # -log 0.5 - log 0.25 on row 0 only, over N = 5
    k3 = (0.5 + ln2 - 1) / 5  # only row 0 token 0 (Δ = -ln2) and row 1 token 1 (Δ = -ln2)
    k3 += (0.5 + ln2 - 1) / 5
    h = (1 + 2 + 3 + 4 + 5) / 5
    assert float(parts["pg_loss"]) == pytest.approx(pg)
    assert float(parts["kl"]) == pytest.approx(k3)
    assert float(loss) == pytest.approx(pg + 0.001 * k3 - 0.001 * h)


def test_kl_estimators_by_hand() -> None:
    # π_θ = 0.5, π_ref = 0.25: Δ = ln(0.25/0.5) = -ln2.
    # k1 = -Δ = ln2 = 0.693147; k2 = Δ²/2 = 0.240227; k3 = e^Δ - Δ - 1 = 0.5 + ln2 - 1 = 0.193147.
    lp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    ln2 = math.log(2)
    assert float(kl_penalty(lp, ref, "k1")) == pytest.approx(ln2)
    assert float(kl_penalty(lp, ref, "k2")) == pytest.approx(ln2**2 / 2)
    assert float(kl_penalty(lp, ref, "k3")) == pytest.approx(0.5 + ln2 - 1)
    # k1 goes negative when π_ref > π_θ; k3 never does and is 0 iff equal.
    assert float(kl_penalty(ref, lp, "k1")) == pytest.approx(-ln2)
    grid = torch.linspace(-5, 5, 101)
    assert (kl_penalty(grid, torch.zeros_like(grid), "k3") >= 0).all()
    assert float(kl_penalty(lp, lp, "k3")) == 0.0
    with pytest.raises(ValueError):
        kl_penalty(lp, ref, "k4")  # type: ignore[arg-type]


def test_k3_gradient_closed_form() -> None:
    # ∂k3/∂logπ = 1 - π_ref/π_θ; the reference gets no gradient.
    lp = torch.log(torch.tensor([0.5, 0.1])).requires_grad_(True)
    ref = torch.log(torch.tensor([0.25, 0.3])).requires_grad_(True)
    kl_penalty(lp, ref, "k3").sum().backward()
    torch.testing.assert_close(lp.grad, torch.tensor([1 - 0.5, 1 - 3.0]))
    assert ref.grad is None


def test_entropy_from_logits_and_bonus_sign() -> None:
    # Uniform over 4 tokens: H = ln 4.
    h = entropy_from_logits(torch.zeros(2, 3, 4))
    torch.testing.assert_close(h, torch.full((2, 3), math.log(4)))
    # The bonus lowers the loss as entropy rises: ∂L/∂H_t = -α/N for token_mean.
    params = algorithm_params("grpo", aggregation="token_mean", entropy_coef=0.001)
    mask = torch.tensor([[1, 1, 0]])
    ent = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    loss, parts = compute_policy_loss(
        params,
        logprobs=torch.zeros(1, 3, requires_grad=True),
        response_mask=mask,
        advantages=torch.tensor([0.0]),
        normalizers=LossNormalizers.from_masks(mask),
        entropy=ent,
    )
    assert float(parts["entropy"]) == pytest.approx(1.5)
    assert float(loss.detach()) == pytest.approx(-0.001 * 1.5)
    loss.backward()
    torch.testing.assert_close(ent.grad, torch.tensor([[-0.0005, -0.0005, 0.0]]))


def test_aggregation_modes_by_hand() -> None:
    # Two sequences, lengths 2 and 4; values 1..6 laid out row-major, masked.
    v = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 5.0, 6.0]])
    m = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    n = LossNormalizers.from_masks(m, max_len=10)
    # token_mean: 21/6 = 3.5; seq_mean_token_mean: (1.5 + 4.5)/2 = 3.0;
    # seq_mean_token_sum: (3 + 18)/2 = 10.5; dr_grpo: 21/(2·10) = 1.05.
    assert float(aggregate(v, m, "token_mean", n)) == pytest.approx(3.5)
    assert float(aggregate(v, m, "seq_mean_token_mean", n)) == pytest.approx(3.0)
    assert float(aggregate(v, m, "seq_mean_token_sum", n)) == pytest.approx(10.5)
    assert float(aggregate(v, m, "dr_grpo", n)) == pytest.approx(1.05)
    with pytest.raises(ValueError, match="max_len"):
        aggregate(v, m, "dr_grpo", LossNormalizers.from_masks(m))


def test_token_weights_scale_the_policy_term_only() -> None:
    params = algorithm_params("reinforce", kl_coef=0.1)
    mask = torch.ones(1, 2)
    lp = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    kw = {"logprobs": lp, "response_mask": mask, "advantages": torch.tensor([1.0]),
          "normalizers": LossNormalizers.from_masks(mask), "ref_logprobs": ref}  # fmt: skip
    _, ones = compute_policy_loss(params, **kw)
    _, half = compute_policy_loss(params, **kw, token_weights=torch.tensor([[0.5, 0.0]]))
    # pg: -A·ρ averaged over 2 tokens = -1 -> with w = (0.5, 0): -0.25. KL unchanged.
    assert float(ones["pg_loss"]) == pytest.approx(-1.0)
    assert float(half["pg_loss"]) == pytest.approx(-0.25)
    assert float(half["kl"]) == pytest.approx(float(ones["kl"]))
    assert float(half["kl"]) == pytest.approx((0.5 + math.log(2) - 1) / 2)


def test_missing_inputs_raise() -> None:
    mask = torch.ones(1, 2)
    kw = {"logprobs": torch.zeros(1, 2), "response_mask": mask, "advantages": torch.ones(1),
          "normalizers": LossNormalizers.from_masks(mask)}  # fmt: skip
    with pytest.raises(ValueError, match="ref_logprobs"):
        compute_policy_loss(algorithm_params("grpo", kl_coef=0.01), **kw)
    with pytest.raises(ValueError, match="entropy"):
        compute_policy_loss(algorithm_params("grpo", entropy_coef=0.01), **kw)
    with pytest.raises(ValueError, match="positive"):
        compute_policy_loss(algorithm_params("oreal"), **kw, ref_logprobs=torch.zeros(1, 2))


@pytest.mark.parametrize("name", ["grpo", "oreal"])
def test_padding_with_inf_does_not_leak(name: str) -> None:
    # Pad positions holding -inf log-probs (old, ref too) must leave loss and gradient as if
    # they held zeros: no NaN from exp(-inf - -inf) or 0·inf in the backward pass.
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    clean = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.3, 0.3]]))
    padded = clean.masked_fill(mask == 0, float("-inf"))
    params = algorithm_params(name, kl_coef=0.1)
    norms = LossNormalizers.from_masks(mask, torch.tensor([True, False]))
    results = []
    for base in (clean, padded):
        lp = base.clone().requires_grad_(True)
        loss, _ = compute_policy_loss(
            params, logprobs=lp, old_logprobs=base - 0.1, ref_logprobs=base + 0.2,
            response_mask=mask, advantages=torch.tensor([1.0, -1.0]), normalizers=norms,
            positive=torch.tensor([True, False]),
        )  # fmt: skip
        loss.backward()
        results.append((loss.detach(), lp.grad))
    assert torch.isfinite(results[1][1]).all()
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1] * mask)
