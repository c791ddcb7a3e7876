"""Pure search math: aggregations, resampling weights and draws, top-k, weighted vote, rngs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oreal.search.algorithms import (
    aggregate_scores,
    best_index,
    keyed_rng,
    logit,
    multinomial_resample,
    resampling_weights,
    systematic_resample,
    top_k_indices,
    weighted_vote,
)
from oreal.search.steps import join_steps, split_steps


def test_aggregations_of_step_scores() -> None:
    scores = [0.9, 0.5, 0.8]
    assert aggregate_scores(scores, "last") == 0.8
    assert aggregate_scores(scores, "min") == 0.5
    assert aggregate_scores(scores, "max") == 0.9
    assert aggregate_scores(scores, "prod") == pytest.approx(0.36)
    assert aggregate_scores(scores, "mean") == pytest.approx(2.2 / 3)
    assert aggregate_scores([0.3], "model") == 0.3
    with pytest.raises(ValueError, match="one score"):
        aggregate_scores(scores, "model")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_scores(scores, "median")  # type: ignore[arg-type]


def test_resampling_weights_are_softmax_of_logit_over_tau() -> None:
    rewards = [0.2, 0.5, 0.9]
    odds = np.array([r / (1 - r) for r in rewards])
    np.testing.assert_allclose(resampling_weights(rewards, 1.0), odds / odds.sum())
    np.testing.assert_allclose(resampling_weights(rewards, 0.5), odds**2 / (odds**2).sum())
    # 0 and 1 are clipped (its_hub's eps = 1e-7), so no weight is exactly 0 or NaN.
    extreme = resampling_weights([0.0, 1.0], 1.0)
    assert np.isfinite(extreme).all() and 0 < extreme[0] < 1e-12
    assert logit(1.0) == pytest.approx(math.log(1 - 1e-7) - math.log(1e-7))


def test_multinomial_draws_follow_the_weights() -> None:
    weights = [0.1, 0.6, 0.3]
    draws = multinomial_resample(weights, 20_000, keyed_rng(0, "test"))
    counts = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(counts, weights, atol=0.015)  # > 4 standard errors


@pytest.mark.parametrize("seed", range(20))
def test_systematic_draws_give_each_index_floor_or_ceil_of_its_share(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(5))
    n = 13
    counts = np.bincount(systematic_resample(weights, n, keyed_rng(seed)), minlength=5)
    assert counts.sum() == n
    assert ((counts == np.floor(n * weights)) | (counts == np.ceil(n * weights))).all()


def test_top_k_and_argmax_prefer_the_earlier_index_on_ties() -> None:
    assert top_k_indices([0.2, 0.9, 0.9, 0.1], 2) == [1, 2]
    assert top_k_indices([0.5, 0.5, 0.5], 2) == [0, 1]
    assert best_index([0.1, 0.7, 0.7]) == 1


def test_weighted_vote_sums_scores_per_group_and_returns_its_best_member() -> None:
    groups = [0, 1, 1, 2, 2, 2]
    scores = [0.9, 0.5, 0.45, 0.1, 0.1, 0.1]
    # totals: group 0 -> 0.9, group 1 -> 0.95, group 2 -> 0.3; best of group 1 is index 1.
    assert weighted_vote(groups, scores) == 1
    assert weighted_vote(groups, [1.0] * 6) == 3  # equal scores: plain majority, first member
    assert weighted_vote([None, 0, 1], [0.9, 0.4, 0.4]) == 1  # no-answer votes nothing; tie
    assert weighted_vote([None, None], [0.5, 0.5]) is None


def test_keyed_rngs_depend_on_their_keys_only() -> None:
    a = keyed_rng(3, "problem", 0, 1).random(4)
    np.testing.assert_array_equal(a, keyed_rng(3, "problem", 0, 1).random(4))
    assert not np.array_equal(a, keyed_rng(3, "problem", 0, 2).random(4))
    assert not np.array_equal(a, keyed_rng(4, "problem", 0, 1).random(4))


def test_steps_split_and_join() -> None:
    text = "First.\n\nSecond.\n\n\n\nThird \\boxed{1}.\n\n"
    assert split_steps(text) == ["First.", "Second.", "Third \\boxed{1}."]
    assert split_steps("") == [""]
    assert join_steps(["a", "b"], partial=True) == "a\n\nb\n\n"
    assert join_steps(["a", "b"], partial=False) == "a\n\nb"
