"""Advantage estimators against hand-computed values (derivations in the comments)."""

from __future__ import annotations

import pytest
import torch

from oreal.algorithms import advantages as adv
from oreal.algorithms import rewards_from_correct


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def ids(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def test_rewards_from_correct_scales() -> None:
    correct = torch.tensor([True, False, True])
    assert rewards_from_correct(correct, "01").tolist() == [1.0, 0.0, 1.0]
    assert rewards_from_correct(correct, "pm1").tolist() == [1.0, -1.0, 1.0]
    with pytest.raises(ValueError):
        rewards_from_correct(correct, "pm2")  # type: ignore[arg-type]


def test_grpo_uses_unbiased_std_and_eps() -> None:
    # Group [1,0,0,0]: mean 0.25, deviations 0.75, -0.25 x3, Σdev² = 0.5625 + 3·0.0625 = 0.75.
    # Unbiased var = 0.75/3 = 0.25 -> std 0.5 (population std would be 0.433 -> A = 1.732).
    # A = 0.75/(0.5 + 1e-6) = 1.4999970, -0.25/(0.5 + 1e-6) = -0.4999990.
    res = adv.grpo(t([1, 0, 0, 0]), ids([7, 7, 7, 7]))
    expected = t([0.75 / 0.500001, -0.25 / 0.500001, -0.25 / 0.500001, -0.25 / 0.500001])
    torch.testing.assert_close(res.advantages, expected, rtol=0, atol=1e-7)
    # eps is added to the std, not the variance: eps = 0.5 gives 0.75/1.0 and -0.25/1.0.
    res = adv.grpo(t([1, 0, 0, 0]), ids([0, 0, 0, 0]), eps=0.5)
    torch.testing.assert_close(res.advantages, t([0.75, -0.25, -0.25, -0.25]))
    assert res.keep.all()


def test_grpo_degenerate_and_interleaved_groups() -> None:
    # Group 3 is all-correct, group 5 all-wrong: std 0 -> A = 0 exactly; group 9 = [1, 0]:
    # mean 0.5, unbiased std sqrt(0.5) = 0.70711 -> A = ±0.5/0.70711 = ±0.70711 (eps 1e-6).
    res = adv.grpo(t([1, 0, 1, 0, 1, 0]), ids([3, 5, 9, 9, 3, 5]))
    a = 0.5 / (0.5**0.5 + 1e-6)
    torch.testing.assert_close(res.advantages, t([0, 0, a, -a, 0, 0]))


def test_grpo_equal_rewards_give_exactly_zero_in_float32() -> None:
    # 2.3 is not a float32 number: the float32 mean of sixteen 2.3s is off by a rounding
    # residue, and dividing that residue by std + eps = 1e-6 once gave |A| = 0.191.
    res = adv.grpo(torch.full((16,), 2.3), torch.zeros(16, dtype=torch.long))
    assert res.advantages.dtype == torch.float32
    assert torch.equal(res.advantages, torch.zeros(16))
    mixed = adv.grpo(t([2.3] * 15 + [0.0]), ids([0] * 16))  # a real spread is still scored
    assert (mixed.advantages[:15] > 0).all() and mixed.advantages[15] < -3


def test_dr_grpo_is_mean_centred_only() -> None:
    # [1,0,0,0]: mean 0.25 -> 0.75, -0.25 (no std division).
    res = adv.dr_grpo(t([1, 0, 0, 0]), ids([0, 0, 0, 0]))
    torch.testing.assert_close(res.advantages, t([0.75, -0.25, -0.25, -0.25]))


def test_rloo_01_scale() -> None:
    # [1,0,0]: A1 = 1 - (0+0)/2 = 1, A2 = 0 - (1+0)/2 = -0.5, A3 = -0.5.
    res = adv.rloo(t([1, 0, 0]), ids([4, 4, 4]))
    torch.testing.assert_close(res.advantages, t([1.0, -0.5, -0.5]))


def test_rloo_pm1_k16_matches_oreal_table() -> None:
    # ±1 rewards, K = 16: A+ = 2(K-c)/(K-1), A- = -2c/(K-1).
    # c=1: 30/15 = 2.000, -2/15 = -0.133; c=4: 24/15 = 1.600, -8/15 = -0.533;
    # c=8: 16/15 = 1.067, -16/15; c=12: 8/15 = 0.533, -24/15 = -1.600; c=15: 2/15, -30/15 = -2.
    table = {1: (2.000, -0.133), 4: (1.600, -0.533), 8: (1.067, -1.067), 12: (0.533, -1.600)}
    table[15] = (0.133, -2.000)
    rewards, groups = [], []
    for g, c in enumerate(table):
        rewards += [1.0] * c + [-1.0] * (16 - c)
        groups += [g] * 16
    # Shuffle the rows: the estimator must not rely on contiguous groups.
    perm = torch.randperm(80, generator=torch.Generator().manual_seed(0))
    r, g = t(rewards)[perm], ids(groups)[perm]
    res = adv.rloo(r, g)
    for gid, c in enumerate(table):
        a_pos, a_neg = table[c]
        in_g = g == gid
        assert torch.allclose(res.advantages[in_g & (r > 0)], torch.tensor(a_pos), atol=5e-4)
        assert torch.allclose(res.advantages[in_g & (r < 0)], torch.tensor(a_neg), atol=5e-4)
        assert torch.allclose(res.pass_rate[in_g], torch.tensor(c / 16))


def test_baselines_reject_singleton_groups() -> None:
    for fn in (adv.grpo, adv.dr_grpo, adv.rloo, adv.oreal):
        with pytest.raises(ValueError, match="at least 2"):
            fn(t([1, 0, 1]), ids([0, 0, 1]))


def test_reinforce_is_raw_reward() -> None:
    res = adv.reinforce(t([1, -1, -1]), ids([0, 0, 1]))
    assert res.advantages.tolist() == [1.0, -1.0, -1.0]
    assert res.keep.all()


def test_reinforce_rej_rejects_all_equal_groups_exactly() -> None:
    # Group 0 mixed -> A = r; group 1 all +1 and group 2 all -1 -> rejected (A = 0).
    r, g = t([1, -1, -1, 1, 1, -1, -1, -1]), ids([0, 0, 0, 1, 1, 2, 2, 2])
    dropped = adv.reinforce_rej(r, g, rejected_rows="drop")
    assert dropped.keep.tolist() == [True, True, True, False, False, False, False, False]
    assert dropped.advantages.tolist() == [1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # The authors' code (default) keeps the rejected rows in the step with A = 0.
    counted = adv.reinforce_rej(r, g)
    assert counted.keep.all()
    assert counted.advantages.tolist() == dropped.advantages.tolist()
    # Exact comparison: rewards 0.5 and 0.500001 differ (a std < 1e-6 threshold would drop it).
    res = adv.reinforce_rej(t([0.5, 0.500001]), ids([0, 0]), rejected_rows="drop")
    assert res.keep.all()


def test_raft_keeps_positives_with_unit_advantage() -> None:
    res = adv.raft(t([1, 0, 1]), ids([0, 0, 0]), rejected_rows="drop")
    assert res.keep.tolist() == [True, False, True]
    assert res.advantages.tolist() == [1.0, 0.0, 1.0]
    counted = adv.raft(t([1, 0, 1]), ids([0, 0, 0]))  # the authors' code: wrong rows stay, A = 0
    assert counted.keep.all() and counted.advantages.tolist() == [1.0, 0.0, 1.0]
    res = adv.raft(t([1, -1]), ids([0, 0]))  # ±1: max(r, 0)
    assert res.advantages.tolist() == [1.0, 0.0]


def test_psr_nsr_w_reinforce() -> None:
    r, g = t([1, 0, 0, 1]), ids([0, 0, 1, 1])
    psr, nsr = adv.psr(r, g), adv.nsr(r, g)
    assert psr.advantages.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert psr.keep.tolist() == [True, False, False, True]
    assert nsr.advantages.tolist() == [0.0, -1.0, -1.0, 0.0]
    assert nsr.keep.tolist() == [False, True, True, False]
    counted = adv.psr(r, g, rejected_rows="count")
    assert counted.keep.all() and counted.advantages.tolist() == [1.0, 0.0, 0.0, 1.0]
    w = adv.w_reinforce(r, g)
    torch.testing.assert_close(w.advantages, t([0.1, -1.0, -1.0, 0.1]))
    assert w.keep.all()
    torch.testing.assert_close(adv.w_reinforce(r, g, lam=0.5).advantages, t([0.5, -1, -1, 0.5]))


def test_positive_and_pass_rate_fields() -> None:
    res = adv.grpo(t([1, 0, 0, 0, 1, 1]), ids([0, 0, 0, 0, 1, 1]))
    assert res.positive.tolist() == [True, False, False, False, True, True]
    torch.testing.assert_close(res.pass_rate, t([0.25] * 4 + [1.0] * 2))
