"""Registry: names, closest-name errors, presets, and parameter routing to the estimators."""

from __future__ import annotations

import pytest
import torch

from oreal.algorithms import (
    AlgorithmParams,
    algorithm_params,
    available_algorithms,
    compute_advantages,
    get_advantage_estimator,
    rewards_from_correct,
)
from oreal.algorithms import advantages as adv

NAMES = ["grpo", "dr_grpo", "rloo", "reinforce", "reinforce_rej", "raft", "psr", "nsr",
         "w_reinforce", "oreal"]  # fmt: skip


def test_all_methods_registered() -> None:
    assert set(NAMES) <= set(available_algorithms())
    assert get_advantage_estimator("oreal") is adv.oreal


@pytest.mark.parametrize(
    ("bad", "closest"),
    [("grop", "grpo"), ("dr-grpo", "dr_grpo"), ("reinforce_reject", "reinforce_rej"),
     ("OREAL", "oreal")],
)  # fmt: skip
def test_unknown_algorithm_names_closest(bad: str, closest: str) -> None:
    with pytest.raises(ValueError, match=f"Did you mean '{closest}'"):
        get_advantage_estimator(bad)


def test_unknown_options_name_closest() -> None:
    with pytest.raises(ValueError, match="'token_mean'"):
        algorithm_params("grpo", aggregation="token-mean")
    with pytest.raises(ValueError, match="'kl_coef'"):
        algorithm_params("grpo", kl_coeff=0.1)
    with pytest.raises(ValueError, match="'release'"):
        algorithm_params("oreal", "relase")
    with pytest.raises(ValueError, match="'k3'"):
        AlgorithmParams(name="grpo", kl_estimator="k33")


def test_oreal_presets_pin_both_forms() -> None:
    rel, pap = algorithm_params("oreal"), algorithm_params("oreal", "paper")
    assert rel.oreal_form == "release" and pap.oreal_form == "paper"
    assert (rel.reward_scale, pap.reward_scale) == ("pm1", "01")
    assert (rel.pos_mult_adv, pap.pos_mult_adv) == (True, False)
    assert (rel.neg_weight, pap.neg_weight) == ("abs_adv", "one_minus_p")
    assert (rel.neg_surrogate, pap.neg_surrogate) == ("ratio", "log_ratio")
    assert (rel.kl_target, pap.kl_target) == ("ref", "old")
    for p in (rel, pap):
        assert (p.kl_coef, p.kl_estimator, p.kl_normalizer) == (0.01, "k3", "all")
        assert (p.positive_factor, p.negative_factor, p.policy_loss) == (1.0, 0.5, "oreal")
    # An explicit override wins over the form.
    assert algorithm_params("oreal", "paper", kl_target="ref").kl_target == "ref"


def test_method_defaults() -> None:
    expected = {
        "grpo": ("01", "ppo_clip", "seq_mean_token_mean"),
        "dr_grpo": ("01", "ppo_clip", "dr_grpo"),
        "reinforce_rej": ("pm1", "ppo_clip", "token_mean"),
        "raft": ("01", "sft", "token_mean"),
        "nsr": ("01", "ppo_clip", "token_mean"),
    }
    for name, (scale, loss, agg) in expected.items():
        p = AlgorithmParams(name=name)
        assert (p.reward_scale, p.policy_loss, p.aggregation, p.kl_coef) == (scale, loss, agg, 0)


def test_compute_advantages_routes_params_and_checks_scale() -> None:
    g = torch.tensor([0, 0, 0, 0])
    r01 = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # grpo_eps reaches the estimator: unbiased std 0.5, eps 0.5 -> 0.75/1.0 (see advantages test).
    res = compute_advantages(algorithm_params("grpo", grpo_eps=0.5), r01, g)
    torch.testing.assert_close(res.advantages, torch.tensor([0.75, -0.25, -0.25, -0.25]))
    res = compute_advantages(algorithm_params("w_reinforce", w_reinforce_lambda=0.3), r01, g)
    torch.testing.assert_close(res.advantages, torch.tensor([0.3, -1.0, -1.0, -1.0]))
    # OREAL release expects ±1: {0,1} rewards are refused rather than silently halved.
    with pytest.raises(ValueError, match="pm1"):
        compute_advantages(algorithm_params("oreal"), r01, g)
    params = algorithm_params("oreal")
    rewards = rewards_from_correct(r01.bool(), params.reward_scale)
    res = compute_advantages(params, rewards, g, generator=torch.Generator().manual_seed(0))
    assert int(res.keep.sum()) == 2
    # filter_groups reaches the OREAL estimator.
    res = compute_advantages(algorithm_params("oreal", filter_groups=False), rewards, g)
    assert res.keep.all()
