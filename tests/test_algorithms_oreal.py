"""OREAL: filtering, hand-computed loss values, and autograd against the closed-form gradient."""

from __future__ import annotations

import math

import torch

from oreal.algorithms import OREAL_FORMS, LossNormalizers, oreal_loss
from oreal.algorithms import advantages as adv
from oreal.seeding import Purpose, keyed_uniforms


def uniforms(seed: int, n: int = 20) -> torch.Tensor:
    """The trainer's keyed draws for n rows (group and sample ids are just row numbers here)."""
    return keyed_uniforms(seed, Purpose.SELECTION, 0, list(range(n)), [0] * n)


def _oreal_batch() -> tuple[torch.Tensor, torch.Tensor]:
    # ±1 rewards, K = 4. g0 all correct, g1 all wrong, g2 c=1, g3 c=3, g4 c=2; rows interleaved.
    groups = [[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, -1, -1], [1, 1, 1, -1], [1, -1, 1, -1]]
    rewards = [r for g in groups for r in g]
    gid = [i for i, g in enumerate(groups) for _ in g]
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    return torch.tensor(rewards, dtype=torch.float32)[perm], torch.tensor(gid)[perm]


def test_oreal_filter_one_correct_one_wrong_per_mixed_group() -> None:
    r, g = _oreal_batch()
    res = adv.oreal(r, g, uniforms=uniforms(0))
    for gid in range(5):
        kept = res.keep & (g == gid)
        if gid in (0, 1):  # c in {0, K}: removed
            assert not kept.any()
        else:
            assert int((kept & (r > 0)).sum()) == 1
            assert int((kept & (r < 0)).sum()) == 1
    assert int(res.keep.sum()) == 6


def test_oreal_advantages_computed_before_filtering() -> None:
    # g3 has c = 3 of K = 4: RLOO over the full group gives A+ = 2(K-c)/(K-1) = 2/3 and
    # A- = -2c/(K-1) = -2. On the kept pair alone (K = 2) it would be ±2.
    # g2 (c = 1): A+ = 2·3/3 = 2, A- = -2/3. g4 (c = 2): A± = ±4/3.
    r, g = _oreal_batch()
    res = adv.oreal(r, g, uniforms=uniforms(0))
    expected = {2: (2.0, -2 / 3), 3: (2 / 3, -2.0), 4: (4 / 3, -4 / 3)}
    for gid, (a_pos, a_neg) in expected.items():
        kept = res.keep & (g == gid)
        assert math.isclose(float(res.advantages[kept & (r > 0)]), a_pos, rel_tol=1e-6)
        assert math.isclose(float(res.advantages[kept & (r < 0)]), a_neg, rel_tol=1e-6)
    torch.testing.assert_close(res.pass_rate[g == 3], torch.full((4,), 0.75))


def test_oreal_selection_reproducible_and_uniform() -> None:
    r, g = _oreal_batch()
    a = adv.oreal(r, g, uniforms=uniforms(123)).keep
    b = adv.oreal(r, g, uniforms=uniforms(123)).keep
    assert torch.equal(a, b)
    # The pick follows the row's own draw, not its position: permuting the rows together with
    # their draws permutes the selection.
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(5))
    permuted = adv.oreal(r[perm], g[perm], uniforms=uniforms(123)[perm]).keep
    assert torch.equal(permuted, a[perm])
    # Over 300 seeds each of g3's three correct rollouts is picked ~100 times (uniform);
    # binomial(300, 1/3) has std 8.2, so [60, 140] fails only for a non-uniform pick.
    counts = torch.zeros(20)
    for seed in range(300):
        counts += adv.oreal(r, g, uniforms=uniforms(seed)).keep.float()
    picks = counts[(g == 3) & (r > 0)]
    assert picks.sum() == 300
    assert ((picks > 60) & (picks < 140)).all(), picks


def test_oreal_without_filter_keeps_everything() -> None:
    r, g = _oreal_batch()
    res = adv.oreal(r, g, filter_groups=False)
    assert res.keep.all()
    assert (res.advantages[(g == 0) | (g == 1)] == 0).all()  # degenerate groups: A = 0


def _tiny_example() -> dict[str, torch.Tensor]:
    # Row 0 correct (A+ = 1.5), 2 response tokens; row 1 wrong (A- = -0.5), 3 tokens.
    lp = torch.log(torch.tensor([[0.5, 0.25, 1.0], [0.5, 0.5, 0.5]]))
    return {
        "logprobs": lp.clone().requires_grad_(True),
        "response_mask": torch.tensor([[1, 1, 0], [1, 1, 1]]),
        "advantages": torch.tensor([1.5, -0.5]),
        "positive": torch.tensor([True, False]),
        "ref_logprobs": lp.clone().index_put_(
            (torch.tensor(1), torch.tensor(0)), torch.log(torch.tensor(0.25))
        ),
        "token_weights": torch.tensor([[1.0, 0.5, 9.0], [0.2, 1.0, 0.0]]),
        "pass_rate": torch.tensor([0.25, 0.25]),
    }


def test_oreal_release_value_by_hand() -> None:
    x = _tiny_example()
    norms = LossNormalizers.from_masks(x["response_mask"], x["positive"])
    assert (norms.num_pos_tokens, norms.num_neg_tokens, norms.num_tokens) == (2, 3, 5)
    loss, parts = oreal_loss(**x, normalizers=norms)
    # L_pos = (λ+/N+)·A+·Σ w·(-log π) = (1/2)·1.5·(1·ln2 + 0.5·ln4) = 1.5·ln2 = 1.039721
    # L_neg = (η/N-)·|A-|·Σ w·ρ = (0.5/3)·0.5·(0.2 + 1 + 0)·1 = 0.1
    # L_KL = (β/N)·k3, one token with Δ = ln(0.25/0.5) = -ln2: k3 = 0.5 + ln2 - 1 = 0.193147
    #      = 0.01/5·0.193147 = 0.000386294
    pos, neg, kl = 1.5 * math.log(2), 0.1, (0.5 + math.log(2) - 1) / 5
    assert math.isclose(float(parts["pos_loss"]), pos, rel_tol=1e-6)
    assert math.isclose(float(parts["neg_loss"]), neg, rel_tol=1e-6)
    assert math.isclose(float(parts["kl"]), kl, rel_tol=1e-6)
    assert math.isclose(float(loss.detach()), pos + neg + 0.01 * kl, rel_tol=1e-6)
    # kl_normalizer="neg" (before commit 2859cc0) divides the KL by N- = 3 instead of N = 5.
    _, parts = oreal_loss(**_tiny_example(), normalizers=norms, kl_normalizer="neg")
    assert math.isclose(float(parts["kl"]), kl * 5 / 3, rel_tol=1e-6)


def test_oreal_paper_value_by_hand() -> None:
    x = _tiny_example()
    norms = LossNormalizers.from_masks(x["response_mask"], x["positive"])
    form = {k: v for k, v in OREAL_FORMS["paper"].items() if k != "reward_scale"}
    loss, parts = oreal_loss(**x, normalizers=norms, **form)
    # Pure BC: (1/2)·(ln2 + 0.5·ln4) = ln2. Negative: log ratio = 0 on-policy. KL to π_old = 0.
    assert math.isclose(float(parts["pos_loss"]), math.log(2), rel_tol=1e-6)
    assert float(parts["neg_loss"]) == 0.0
    assert float(parts["kl"]) == 0.0
    assert math.isclose(float(loss.detach()), math.log(2), rel_tol=1e-6)
    # Gradient on the negative row: (η/N-)·(1 - p)·w = (0.5/3)·0.75·w.
    loss.backward()
    torch.testing.assert_close(x["logprobs"].grad[1], 0.5 / 3 * 0.75 * torch.tensor([0.2, 1, 0]))


def test_oreal_release_gradient_matches_closed_form() -> None:
    # The release's gradient (one update per batch, ρ ≡ 1):
    # ∂L/∂logπ_t = -(λ+/N+)·A+·w (positive) + (η/N-)·|A-|·w (negative)
    #                                   + (β/N)·(1 - π_ref/π_θ)  (k3, every kept token).
    gen = torch.Generator().manual_seed(0)
    b, T = 6, 5
    lp = -torch.rand(b, T, generator=gen, dtype=torch.float64) * 3
    ref = -torch.rand(b, T, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(b, T, generator=gen) < 0.7
    mask[:, 0] = True
    w = torch.rand(b, T, generator=gen, dtype=torch.float64)
    positive = torch.tensor([True, False, True, False, True, False])
    a = torch.tensor([0.4, -1.2, 2.0, -0.1, 1.0, -0.7], dtype=torch.float64)
    norms = LossNormalizers.from_masks(mask, positive)
    leaf = lp.clone().requires_grad_(True)
    loss, _ = oreal_loss(leaf, mask, a, positive, norms, ref_logprobs=ref, token_weights=w)
    loss.backward()
    n_pos, n_neg, n = norms.num_pos_tokens, norms.num_neg_tokens, norms.num_tokens
    pos = positive.double().unsqueeze(-1)
    coeff = -pos * (1.0 / n_pos) * a.unsqueeze(-1) * w
    coeff += (1 - pos) * (0.5 / n_neg) * a.abs().unsqueeze(-1) * w
    coeff += 0.01 / n * (1 - torch.exp(ref - lp))
    torch.testing.assert_close(leaf.grad, coeff * mask, rtol=1e-10, atol=1e-12)


def test_oreal_gradient_through_a_linear_model() -> None:
    # Same closed form one level up: ∇_W L = Σ_t c_t ∇_W log π_t with c_t the coefficients.
    gen = torch.Generator().manual_seed(3)
    b, T, d, V = 4, 3, 5, 7
    x = torch.randn(b, T, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, V, (b, T), generator=gen)
    W = torch.randn(d, V, generator=gen, dtype=torch.float64, requires_grad=True)
    W_ref = W.detach() + 0.1 * torch.randn(d, V, generator=gen, dtype=torch.float64)
    mask = torch.ones(b, T, dtype=torch.bool)
    mask[1, 2] = mask[3, 1:] = False
    positive = torch.tensor([True, False, True, False])
    a = torch.tensor([1.0, -0.5, 0.3, -2.0], dtype=torch.float64)

    def logprobs(weight: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x @ weight, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    norms = LossNormalizers.from_masks(mask, positive)
    ref = logprobs(W_ref).detach()
    loss, _ = oreal_loss(logprobs(W), mask, a, positive, norms, ref_logprobs=ref)
    (grad,) = torch.autograd.grad(loss, W)
    lp = logprobs(W)
    pos = positive.double().unsqueeze(-1)
    coeff = -pos * a.unsqueeze(-1) / norms.num_pos_tokens
    coeff = coeff + (1 - pos) * 0.5 * a.abs().unsqueeze(-1) / norms.num_neg_tokens
    coeff = coeff + 0.01 / norms.num_tokens * (1 - torch.exp(ref - lp.detach()))
    (expected,) = torch.autograd.grad((coeff.detach() * lp * mask).sum(), W)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
