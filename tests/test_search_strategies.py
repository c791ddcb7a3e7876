"""Selection rules on hand-made answers, beam search and DVTS on scripted trees, budgets, gold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from oreal.data import Problem
from oreal.rollout import GenerationOutput, Generator, RolloutBatch, SamplingParams
from oreal.search.algorithms import top_k_indices
from oreal.search.scorers import ScorerInputError
from oreal.search.scorers.oracle import OracleScorer
from oreal.search.strategies import (
    DVTS,
    BeamSearch,
    SamplePool,
    SearchConfig,
    SearchUnit,
    build_strategy,
)
from oreal.search.testing import ASSISTANT_MARK, ScriptedGenerator, ScriptedScorer

PARAMS = SamplingParams(max_new_tokens=64, temperature=0.8, seed=0)
PROMPT = f"question{ASSISTANT_MARK}"
# Hand-made solutions, their scores, and what each rule must return for N = 6 and N = 3:
#   majority:          N=6 -> 7 has 3 votes -> "d"       N=3 -> 5 has 2 votes -> "b"
#   best-of-N:         "a" (0.9) for both
#   weighted majority: totals 3: 0.9, 5: 0.95, 7: 0.3 -> group 5, its best "b" (both N)
ANSWERS = {
    "a \\boxed{3}": 0.9,
    "b \\boxed{5}": 0.5,
    "c \\boxed{5}": 0.45,
    "d \\boxed{7}": 0.1,
    "e \\boxed{7}": 0.1,
    "f \\boxed{7}": 0.1,
}


class FixedGenerator:
    """Sample i of every prompt is ``responses[i]``; counts its calls."""

    def __init__(self, responses: Sequence[str]) -> None:
        from oreal.models import build_tiny_tokenizer

        self.tokenizer = build_tiny_tokenizer()
        self.responses = list(responses)
        self.calls = 0

    def sync_weights(self, model: Any) -> None:
        pass

    def generate(
        self, prompts: Sequence[str], params: Any, n: int = 1, *, keys: Any = None
    ) -> RolloutBatch:
        self.calls += 1
        outputs = []
        for g, prompt in enumerate(prompts):
            for i in range(n):
                text = self.responses[i]
                ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], 2]
                outputs.append(GenerationOutput(g, i, prompt, [1], ids, text, "eos"))
        return RolloutBatch(outputs, len(prompts), n)


def choose(method: str, budget: int, verifier: Any = None, **kwargs: Any) -> str:
    generator = FixedGenerator(list(ANSWERS))
    scorer = ScriptedScorer(lambda text: ANSWERS[text], per_step=False)
    strategy = build_strategy(method, generator, scorer, budget=budget, verifier=verifier, **kwargs)
    return strategy.generate([PROMPT], PARAMS, 1).outputs[0].text


@pytest.mark.parametrize(
    ("method", "budget", "expected"),
    [
        ("majority", 6, "d \\boxed{7}"),
        ("majority", 3, "b \\boxed{5}"),
        ("best_of_n", 6, "a \\boxed{3}"),
        ("best_of_n", 3, "a \\boxed{3}"),
        ("weighted_majority", 6, "b \\boxed{5}"),
        ("weighted_majority", 3, "b \\boxed{5}"),
    ],
)
def test_selection_rules_on_hand_made_answers(method: str, budget: int, expected: str) -> None:
    assert choose(method, budget) == expected


def test_votes_group_equivalent_answers_through_the_verifier() -> None:
    from oreal.verify import Verifier

    responses = ["x \\boxed{0.5}", "y \\boxed{3}", "z \\boxed{\\frac{1}{2}}", "w \\boxed{3}"]
    scores = {"x \\boxed{0.5}": 0.4, "y \\boxed{3}": 0.3, "z \\boxed{\\frac{1}{2}}": 0.35,
              "w \\boxed{3}": 0.3}  # fmt: skip
    with Verifier(workers=1) as verifier:
        for method, expected in (
            ("majority", "x \\boxed{0.5}"),
            ("weighted_majority", "x \\boxed{0.5}"),
        ):
            strategy = build_strategy(
                method,
                FixedGenerator(responses),
                ScriptedScorer(lambda text: scores[text], per_step=False),
                budget=4,
                verifier=verifier,
            )
            assert strategy.generate([PROMPT], PARAMS, 1).outputs[0].text == expected
    # Without the verifier 0.5 and \frac{1}{2} are different answers: 3 wins the vote.
    strategy = build_strategy("majority", FixedGenerator(responses), budget=4)
    assert strategy.generate([PROMPT], PARAMS, 1).outputs[0].text == "y \\boxed{3}"


def test_a_shared_pool_draws_once_and_charges_each_budget_its_own_samples() -> None:
    generator = FixedGenerator(list(ANSWERS))
    scorer = ScriptedScorer(lambda text: ANSWERS[text], per_step=False)
    pool = SamplePool(6)
    costs = {}
    for method, budget in (("best_of_n", 2), ("weighted_majority", 6), ("majority", 3)):
        strategy = build_strategy(method, generator, scorer, budget=budget, pool=pool)
        strategy.generate([PROMPT], PARAMS, 1)
        costs[(method, budget)] = strategy.pop_stats(PROMPT, 0)
    assert generator.calls == 1 and len(scorer.requests) == 6  # drawn and scored once
    lengths = [len(text) + 1 for text in ANSWERS]  # character tokens + eos
    assert costs[("best_of_n", 2)].generated_tokens == sum(lengths[:2])
    assert costs[("weighted_majority", 6)].generated_tokens == sum(lengths)
    assert costs[("best_of_n", 2)].scored_sequences == 2
    assert costs[("majority", 3)].scored_sequences == 0  # a vote needs no scores
    assert costs[("majority", 3)].generated_sequences == 3


def three_level_tree(steps: tuple[str, ...]) -> list[tuple[str, float, bool]]:
    """s0..s7 at random, then t0..t3, then a boxed answer."""
    if not steps:
        return [(f"s{i}", 1 / 8, False) for i in range(8)]
    if len(steps) == 1:
        return [(f"t{i}", 1 / 4, False) for i in range(4)]
    return [("\\boxed{1}", 1.0, True)]


def step_score(step: str) -> float:
    return 0.1 + 0.1 * int(step[1]) if step[0] in "st" else 0.5


def test_beam_search_keeps_exactly_the_top_k_and_expands_them_round_robin() -> None:
    generator = ScriptedGenerator(three_level_tree)
    scorer = ScriptedScorer(step_score)
    strategy = BeamSearch(generator, scorer, budget=8, config=SearchConfig(beam_width=4))
    unit = SearchUnit(PROMPT, 0, None)
    (result,) = strategy.search([unit], PARAMS)
    first = [r.steps for r in scorer.requests[:8]]  # the 8 first steps, in order
    kept = [first[i] for i in top_k_indices([step_score(s[0]) for s in first], 2)]
    assert generator.calls[1] == [kept[i % 2] for i in range(8)]
    second = [r.steps for r in scorer.requests[8:16]]
    kept = [second[i] for i in top_k_indices([step_score(s[1]) for s in second], 2)]
    assert generator.calls[2] == [kept[i % 2] for i in range(8)]
    assert len(generator.calls) == 3 and result.finish == "eos" and result.candidates == 8
    assert unit.stats.generated_sequences == 24 and unit.stats.steps == 3


def test_dvts_subtrees_each_follow_their_own_best_child() -> None:
    generator = ScriptedGenerator(three_level_tree)
    scorer = ScriptedScorer(step_score)
    strategy = DVTS(generator, scorer, budget=8, config=SearchConfig(beam_width=4))
    (result,) = strategy.search([SearchUnit(PROMPT, 0, None)], PARAMS)
    first = [r.steps for r in scorer.requests[:8]]
    best = [
        max(first[lo : lo + 4], key=lambda s: (step_score(s[0]), -first.index(s))) for lo in (0, 4)
    ]
    assert generator.calls[1] == [best[0]] * 4 + [best[1]] * 4
    assert result.candidates == 2 and result.text.endswith("\\boxed{1}")


@pytest.mark.parametrize("method", ["beam_search", "dvts", "particle_filtering"])
def test_budget_one_is_one_sampled_solution(method: str) -> None:
    generator = ScriptedGenerator(three_level_tree)
    strategy = build_strategy(method, generator, ScriptedScorer(step_score), budget=1)
    strategy.generate([PROMPT], PARAMS, 1)
    stats = strategy.pop_stats(PROMPT, 0)
    assert stats is not None and stats.generated_sequences == 3 and stats.scored_sequences == 3
    assert all(len(call) == 1 for call in generator.calls)


def test_the_oracle_sees_gold_only_for_registered_problems() -> None:
    from oreal.data import render_prompt
    from oreal.verify import Verifier

    generator = FixedGenerator(["\\boxed{4}", "\\boxed{5}", "\\boxed{6}"])
    problem = Problem(id="p", question="What is 2 + 3?", answer="5")
    with Verifier(workers=1) as verifier:
        strategy = build_strategy(
            "best_of_n", generator, OracleScorer(verifier), budget=3, verifier=verifier
        )
        assert isinstance(strategy, Generator)
        prompt = render_prompt(problem, generator.tokenizer, "chat")
        with pytest.raises(ScorerInputError, match="gold"):
            strategy.generate([prompt], PARAMS, 1)
        strategy.register_problems([problem], "chat")
        batch = strategy.generate([prompt], PARAMS, 2)  # two independent searches
    assert [o.text for o in batch.outputs] == ["\\boxed{5}", "\\boxed{5}"]
    assert [o.sample for o in batch.outputs] == [0, 1]


def test_scorer_requirements_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a scorer"):
        build_strategy("particle_filtering", FixedGenerator(["x"]), budget=2)
    with pytest.raises(ValueError, match="unknown search method"):
        build_strategy("mcts", FixedGenerator(["x"]), budget=2)


@pytest.mark.parametrize("method", ["particle_filtering", "beam_search", "best_of_n"])
def test_a_search_on_a_keyed_engine_does_not_depend_on_the_rest_of_the_batch(
    method: str,
) -> None:
    """Fast CPU engine, tiny model: a problem searched alone or among others gives the same."""
    from oreal.data import render_prompt
    from oreal.models import build_tiny_model, build_tiny_tokenizer
    from oreal.rollout import FastGenerator
    from oreal.search.scorers.token_level import LikelihoodScorer

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    problems = [
        Problem(id=str(i), question=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(4)
    ]
    prompts = [render_prompt(p, tokenizer, "chat") for p in problems]
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=0)

    def texts(batch_prompts: list[str]) -> list[str]:
        strategy = build_strategy(
            method,
            FastGenerator(model, tokenizer, matmul_dtype=torch.float32),
            LikelihoodScorer(model, tokenizer, autocast=False),
            budget=4,
            config=SearchConfig(max_steps=3),
        )
        return [o.text for o in strategy.generate(batch_prompts, params, 1).outputs]

    together = texts(prompts)
    assert texts(prompts[2:3]) == together[2:3]
    assert texts(prompts[::-1]) == together[::-1]
    assert len(set(together)) > 1  # the searches did differ from one another
