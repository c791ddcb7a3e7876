"""Registry: names, closest-name errors, presets, and parameter routing to the estimators."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from oreal.algorithms import (
    AdvantageResult,
    PPOClipParams,
    TokenLossParams,
    algorithm_params,
    available_algorithms,
    compute_advantages,
    get_estimator,
    register_algorithm,
    register_estimator,
    rewards_from_correct,
)
from oreal.algorithms import advantages as adv

NAMES = ["grpo", "dr_grpo", "rloo", "reinforce", "reinforce_rej", "raft", "raft_pp", "psr",
         "nsr", "w_reinforce", "oreal"]  # fmt: skip


def test_all_methods_registered() -> None:
    assert set(NAMES) <= set(available_algorithms())
    assert get_estimator("oreal") is adv.oreal


@pytest.mark.parametrize(
    ("bad", "closest"),
    [("grop", "grpo"), ("dr-grpo", "dr_grpo"), ("reinforce_reject", "reinforce_rej"),
     ("OREAL", "oreal")],
)  # fmt: skip
def test_unknown_algorithm_names_closest(bad: str, closest: str) -> None:
    with pytest.raises(ValueError, match=f"Did you mean '{closest}'"):
        algorithm_params(bad)


def test_unknown_options_name_closest() -> None:
    with pytest.raises(ValueError, match="'token_mean'"):
        algorithm_params("grpo", aggregation="token-mean")
    with pytest.raises(ValueError, match="'kl_coef'"):
        algorithm_params("grpo", kl_coeff=0.1)
    with pytest.raises(ValueError, match="'release'"):
        algorithm_params("oreal", form="relase")
    with pytest.raises(ValueError, match="'k1', 'k2' or 'k3'"):
        algorithm_params("grpo", kl_estimator="k33")


def test_oreal_presets_pin_both_forms() -> None:
    rel, pap = algorithm_params("oreal"), algorithm_params("oreal", form="paper")
    assert rel.form == "release" and pap.form == "paper"
    assert (rel.reward_scale, pap.reward_scale) == ("pm1", "01")
    assert (rel.pos_mult_adv, pap.pos_mult_adv) == (True, False)
    assert (rel.neg_weight, pap.neg_weight) == ("abs_adv", "one_minus_p")
    assert (rel.neg_surrogate, pap.neg_surrogate) == ("ratio", "log_ratio")
    assert (rel.kl_target, pap.kl_target) == ("ref", "old")
    for p in (rel, pap):
        assert (p.kl_coef, p.kl_estimator, p.kl_normalizer) == (0.01, "k3", "all")
        assert (p.positive_factor, p.negative_factor, p.policy_loss) == (1.0, 0.5, "oreal")
    # An explicit override wins over the form.
    assert algorithm_params("oreal", form="paper", kl_target="ref").kl_target == "ref"


def test_method_defaults() -> None:
    """The published defaults (docs/algorithms.md gives the file:line evidence for each)."""
    expected = {  # name: (scale, loss, aggregation, kl, entropy, clip high, dual clip, rejected)
        "grpo": ("01", "ppo_clip", "seq_mean_token_mean", 0.0, 0.0, 0.2, None, None),
        "dr_grpo": ("01", "ppo_clip", "dr_grpo", 0.0, 0.0, 0.2, None, None),
        "reinforce_rej": ("01", "ppo_clip", "token_mean", 0.001, 0.001, 0.2, 3.0, "count"),
        "raft": ("01", "sft", "token_mean", 0.001, 0.001, None, None, "count"),
        "raft_pp": ("01", "ppo_clip", "token_mean", 0.001, 0.001, 0.2, 3.0, "count"),
        "psr": ("01", "ppo_clip", "token_mean", 0.0, 0.001, 0.2, None, "drop"),
        "nsr": ("01", "ppo_clip", "token_mean", 0.0, 0.001, 0.2, None, "drop"),
        "w_reinforce": ("01", "ppo_clip", "token_mean", 0.0, 0.001, 0.2, None, None),
    }
    for name, (scale, loss, agg, kl, ent, high, dual, rejected) in expected.items():
        p = algorithm_params(name)
        assert (p.reward_scale, p.policy_loss, p.aggregation) == (scale, loss, agg), name
        assert (p.kl_coef, p.entropy_coef) == (kl, ent), name
        assert getattr(p, "clip_eps_high", None) == high, name
        assert getattr(p, "dual_clip", None) == dual, name
        assert getattr(p, "rejected_rows", None) == rejected, name
    assert algorithm_params("w_reinforce").lam == 0.1


def test_compute_advantages_routes_params_and_checks_scale() -> None:
    g = torch.tensor([0, 0, 0, 0])
    r01 = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # eps reaches the estimator: unbiased std 0.5, eps 0.5 -> 0.75/1.0 (see advantages test).
    res = compute_advantages(algorithm_params("grpo", eps=0.5), r01, g)
    torch.testing.assert_close(res.advantages, torch.tensor([0.75, -0.25, -0.25, -0.25]))
    res = compute_advantages(algorithm_params("w_reinforce", lam=0.3), r01, g)
    torch.testing.assert_close(res.advantages, torch.tensor([0.3, -1.0, -1.0, -1.0]))
    # OREAL release expects ±1: {0,1} rewards are refused rather than silently halved.
    with pytest.raises(ValueError, match="pm1"):
        compute_advantages(algorithm_params("oreal"), r01, g)
    params = algorithm_params("oreal")
    rewards = rewards_from_correct(r01.bool(), params.reward_scale)
    res = compute_advantages(params, rewards, g, uniforms=torch.tensor([0.1, 0.9, 0.5, 0.2]))
    assert res.keep.tolist() == [True, True, False, False]  # the wrong row with the largest draw
    # filter_groups and rejected_rows reach their estimators.
    res = compute_advantages(algorithm_params("oreal", filter_groups=False), rewards, g)
    assert res.keep.all()
    res = compute_advantages(algorithm_params("psr", rejected_rows="count"), r01, g)
    assert res.keep.all()


def test_a_plugin_algorithm_registers_and_validates() -> None:
    @register_estimator("test_median_baseline")
    def median_baseline(rewards: torch.Tensor, group_ids: torch.Tensor) -> AdvantageResult:
        centred = rewards - rewards.median()
        ones = torch.ones_like(rewards, dtype=torch.bool)
        return AdvantageResult(centred, ones, rewards > 0, torch.full_like(rewards, 0.5))

    @register_algorithm("test_median", paper="a test")
    class Median(PPOClipParams):
        estimator: ClassVar[str] = "test_median_baseline"
        policy_loss: ClassVar[str] = "ppo_clip"

    params = algorithm_params("test_median", clip_eps_high=0.28)
    assert params.clip_eps_high == 0.28 and params.paper == "a test"
    res = compute_advantages(params, torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0, 0, 0]))
    assert res.advantages.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="needs parameters of PPOClipParams"):

        @register_algorithm("test_bad")
        class Bad(TokenLossParams):  # lacks the clip parameters ppo_clip reads
            estimator: ClassVar[str] = "test_median_baseline"
            policy_loss: ClassVar[str] = "ppo_clip"
