"""Particle filtering and particle Gibbs against toys whose resampled distribution is known.

Toy: the first step is "A" with prior p_A or "B" with p_B, the second step gives the answer and
ends. A scripted PRM scores A with r_A and B with r_B. After the first step every particle is
live, so it is resampled once with P(i) ∝ exp(logit(r_i) / τ); after the second step all have
finished and nothing is resampled. With k of the N first steps equal to A (k ~ Binomial(N, p_A))
each resampled particle is A with probability k a / (k a + (N - k) b), a = o_A^(1/τ),
b = o_B^(1/τ), o = r / (1 - r) (for systematic resampling this is the expected share), so the
expected final share of A is, in closed form,

    E[share_A] = Σ_k C(N, k) p_A^k p_B^(N-k) · k a / (k a + (N - k) b),

which tends to the posterior π_A = p_A a / (p_A a + p_B b) as N grows; its variance is also in
closed form (``share_moments``), so the mean share over M searches is checked to 4 standard
errors.
"""

from __future__ import annotations

import math

import pytest

from oreal.rollout import Generator, SamplingParams
from oreal.search.strategies import ParticleFiltering, ParticleGibbs, SearchConfig, SearchUnit
from oreal.search.testing import ASSISTANT_MARK, ScriptedGenerator, ScriptedScorer

P_A, P_B = 0.7, 0.3
R_A, R_B = 0.2, 0.6
PARAMS = SamplingParams(max_new_tokens=64, temperature=0.8, seed=0)


def two_step_toy(steps: tuple[str, ...]) -> list[tuple[str, float, bool]]:
    if not steps:
        return [("A", P_A, False), ("B", P_B, False)]
    return [(f"\\boxed{{{steps[0]}}}", 1.0, True)]


def score_by_first_step(step: str) -> float:
    return {"A": R_A, "B": R_B}.get(step, 0.5)


def units(count: int) -> list[SearchUnit]:
    return [
        SearchUnit(prompt=f"question {j}{ASSISTANT_MARK}", sample=0, problem=None)
        for j in range(count)
    ]


def odds(r: float, tau: float = 1.0) -> float:
    return (r / (1 - r)) ** (1 / tau)


def share_moments(n: int, prior: float, a: float, b: float) -> tuple[float, float]:
    """Mean and variance of the final share of A for multinomial resampling, in closed form.

    Given k, the share is Binomial(n, q_k) / n with q_k = k a / (k a + (n - k) b), so
    Var = E[q_k (1 - q_k) / n] + Var(q_k) with k ~ Binomial(n, prior). Systematic resampling
    has the same mean and a smaller variance.
    """
    weights = [math.comb(n, k) * prior**k * (1 - prior) ** (n - k) for k in range(n + 1)]
    q = [k * a / (k * a + (n - k) * b) for k in range(n + 1)]
    mean = sum(w * qk for w, qk in zip(weights, q, strict=True))
    within = sum(w * qk * (1 - qk) / n for w, qk in zip(weights, q, strict=True))
    between = sum(w * (qk - mean) ** 2 for w, qk in zip(weights, q, strict=True))
    return mean, within + between


@pytest.mark.parametrize(
    ("tau", "resampling"), [(1.0, "multinomial"), (0.5, "multinomial"), (1.0, "systematic")]
)
def test_the_resampled_distribution_matches_the_posterior(tau: float, resampling: str) -> None:
    n, m = 8, 400
    strategy = ParticleFiltering(
        ScriptedGenerator(two_step_toy),
        ScriptedScorer(score_by_first_step),
        budget=n,
        config=SearchConfig(tau=tau, resampling=resampling),  # type: ignore[arg-type]
    )
    results = strategy.search(units(m), PARAMS)
    fractions = [sum(p.steps[0] == "A" for p in r.pool) / n for r in results]  # type: ignore[union-attr]
    target, variance = share_moments(n, P_A, odds(R_A, tau), odds(R_B, tau))
    standard_error = math.sqrt(variance / m)
    assert abs(sum(fractions) / m - target) < 4 * standard_error
    # The test can tell this from the prior, from τ = 1 and from weights ∝ r instead of r/(1-r).
    for wrong in (
        P_A,
        share_moments(n, P_A, odds(R_A), odds(R_B))[0],
        share_moments(n, P_A, R_A, R_B)[0],
    ):
        assert wrong == target or abs(wrong - target) > 6 * standard_error
    assert all(len(p.steps) == 2 and p.finish == "eos" for r in results for p in r.pool)  # type: ignore[union-attr]


def test_many_particles_approach_the_posterior() -> None:
    n = 3000
    strategy = ParticleFiltering(
        ScriptedGenerator(two_step_toy), ScriptedScorer(score_by_first_step), budget=n
    )
    (result,) = strategy.search(units(1), PARAMS)
    posterior = P_A * odds(R_A) / (P_A * odds(R_A) + P_B * odds(R_B))
    share = sum(p.steps[0] == "A" for p in result.pool) / n  # type: ignore[union-attr]
    assert abs(share - posterior) < 0.03  # prior 0.7, posterior 0.28; ~3.5 standard errors


def test_finished_particles_stay_in_the_pool_and_are_resampled() -> None:
    """B ends at step 1 with a high score; A is still live, so B competes in the resampling."""

    def toy(steps: tuple[str, ...]) -> list[tuple[str, float, bool]]:
        if not steps:
            return [("A", 0.7, False), ("B \\boxed{2}", 0.3, True)]
        return [("\\boxed{1}", 1.0, True)]

    n, m = 8, 150
    strategy = ParticleFiltering(
        ScriptedGenerator(toy), ScriptedScorer(lambda s: 0.9 if "B" in s else 0.5), budget=n
    )
    results = strategy.search(units(m), PARAMS)
    share_b = sum(p.steps[0].startswith("B") for r in results for p in r.pool) / (n * m)  # type: ignore[union-attr]
    target, variance = share_moments(n, 0.3, odds(0.9), odds(0.5))  # 0.73; without: 0.3
    assert abs(share_b - target) < 4 * math.sqrt(variance / m)
    assert all(r.text == "B \\boxed{2}" for r in results if r.score == 0.9)


def test_the_step_cap_and_the_token_budget_end_particles_as_truncated() -> None:
    endless = ScriptedGenerator(lambda steps: [("more", 1.0, False)])
    strategy = ParticleFiltering(
        endless, ScriptedScorer(lambda s: 0.5), budget=2, config=SearchConfig(max_steps=3)
    )
    (result,) = strategy.search(units(1), PARAMS)
    assert result.text == "more\n\nmore\n\nmore" and result.finish == "length"
    short = SamplingParams(max_new_tokens=8, temperature=0.8, seed=0)  # "more\n\n" is 6 tokens
    (result,) = strategy.search(units(1), short)
    assert result.finish == "length" and len(result.response_ids) == 8
    assert result.text == "more\n\nmo"
    exact = SamplingParams(max_new_tokens=6, temperature=0.8, seed=0)  # one step fills it
    endless.calls.clear()
    (result,) = strategy.search(units(1), exact)
    assert result.text == "more" and result.finish == "length" and len(endless.calls) == 1


def test_budget_accounting_counts_every_generated_step() -> None:
    n = 4
    strategy = ParticleFiltering(
        ScriptedGenerator(two_step_toy), ScriptedScorer(score_by_first_step), budget=n
    )
    assert isinstance(strategy, Generator)
    batch = strategy.generate([f"q{ASSISTANT_MARK}"], PARAMS, 1)
    stats = strategy.pop_stats(f"q{ASSISTANT_MARK}", 0)
    assert stats is not None and strategy.pop_stats(f"q{ASSISTANT_MARK}", 0) is None
    # step 1: "A\n\n" or "B\n\n" (3 tokens); step 2: "\boxed{A}" + eos (10 tokens); N particles.
    assert stats.generated_tokens == n * (3 + 10) == batch.stats["generated_tokens"]
    assert stats.generated_sequences == 2 * n and stats.scored_sequences == 2 * n
    assert stats.steps == 2 and stats.candidates == n
    assert batch.outputs[0].text in ("A\n\n\\boxed{A}", "B\n\n\\boxed{B}")
    assert len(batch.outputs[0].response_ids) == 13 and batch.outputs[0].finish_reason == "eos"


def test_particle_gibbs_runs_sweeps_with_one_retained_reference() -> None:
    strategy = ParticleGibbs(
        ScriptedGenerator(two_step_toy),
        ScriptedScorer(score_by_first_step),
        budget=6,
        config=SearchConfig(sweeps=3),
    )
    (result,) = strategy.search(units(1), PARAMS)
    batch_strategy = ParticleGibbs(
        ScriptedGenerator(two_step_toy),
        ScriptedScorer(score_by_first_step),
        budget=6,
        config=SearchConfig(sweeps=3),
    )
    batch_strategy.generate([f"q{ASSISTANT_MARK}"], PARAMS, 1)
    costs = batch_strategy.pop_stats(f"q{ASSISTANT_MARK}", 0)
    # 2 particles per sweep; sweeps 2 and 3 run 1 new particle beside the reference; 2 steps each.
    assert costs is not None and costs.generated_sequences == 2 * (2 + 1 + 1)
    assert result.pool is not None and len(result.pool) == 2
    with pytest.raises(ValueError, match="multiple of 3"):
        ParticleGibbs(
            ScriptedGenerator(two_step_toy), ScriptedScorer(lambda s: 0.5), budget=4,
            config=SearchConfig(sweeps=3),
        )  # fmt: skip


def test_the_reference_competes_with_its_prefix_and_the_weight_it_had_then() -> None:
    from oreal.search.strategies import Trajectory

    reference = Trajectory(["s1", "s2", "s3"], [[1], [2, 3], [4]], [0.2, 0.7, 0.9], "eos")
    prefix = reference.truncated(2)
    assert prefix.steps == ["s1", "s2"] and prefix.active and prefix.tokens == 3
    assert reference.weight_at(2) == 0.7 and reference.weight_at(5) == 0.9
    assert reference.truncated(3).finish == "eos" and reference.finish == "eos"
