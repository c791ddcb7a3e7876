"""evaluate_problems end to end with scripted responses: scores, records, breakdowns, chunking."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from oreal.data import Problem
from oreal.eval import EvalResult, evaluate_problems
from oreal.models.tiny import build_tiny_tokenizer
from oreal.rollout import GenerationOutput, RolloutBatch, SamplingParams
from oreal.verify import Verifier

SAMPLING = SamplingParams(max_new_tokens=32, temperature=1.0, seed=3)


class ScriptedGenerator:
    """A Generator whose i-th sample for a question is ``script[question][i]``.

    A response of ``None`` plays a truncated sample (finish reason ``length``). Every call is
    recorded so tests can check chunk sizes and seeds.
    """

    def __init__(self, script: dict[str, list[str | None]]) -> None:
        self.tokenizer = build_tiny_tokenizer()
        self.script = script
        self.calls: list[tuple[int, int | None]] = []

    def generate(
        self, prompts: Sequence[str], params: SamplingParams, num_return_sequences: int = 1
    ) -> RolloutBatch:
        self.calls.append((len(prompts), params.seed))
        outputs = []
        for g, prompt in enumerate(prompts):
            question = next(q for q in self.script if q in prompt)
            for i in range(num_return_sequences):
                text = self.script[question][i]
                outputs.append(
                    GenerationOutput(
                        group=g,
                        sample=i,
                        prompt=prompt,
                        prompt_ids=[1],
                        response_ids=[5] * (3 + i),
                        text=text or "\\boxed{1/2} and so on and so",
                        finish_reason="length" if text is None else "eos",
                    )
                )
        return RolloutBatch(outputs=outputs, num_prompts=len(prompts), k=num_return_sequences)

    def sync_weights(self, model: object) -> None:
        """Nothing to sync: there is no model."""


PROBLEMS = [
    Problem(id="p/half", question="What is 1 divided by 2?", answer="1/2",
            metadata={"subject": "Algebra", "level": 2}),
    Problem(id="p/seven", question="What is 3 plus 4?", answer="7",
            metadata={"subject": "Prealgebra", "level": 1}),
    Problem(id="p/ten", question="What is 5 times 2?", answer="10",
            metadata={"subject": "Prealgebra", "level": 1}),
]  # fmt: skip

SCRIPT: dict[str, list[str | None]] = {
    # Two correct spellings (0.5 and 1/2) tie with two 3s: the first group seen (0.5) wins.
    "1 divided by 2": ["So \\boxed{0.5}", "\\boxed{3}", "\\boxed{3}", "Thus \\boxed{\\frac12}"],
    # 4 and 4.0 are one group and outvote the single correct 7; one sample has no answer.
    "3 plus 4": ["\\boxed{4}", "I do not know.", "\\boxed{7}", "\\boxed{4.0}"],
    # The truncated sample would say 1/2 but casts no vote; 10 wins maj@4 (2 votes to 1).
    "5 times 2": ["\\boxed{12}", None, "\\boxed{10}", "Hence \\boxed{10}."],
}


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    with Verifier(mode="strict") as instance:
        yield instance


def run(verifier: Verifier, **kwargs: object) -> tuple[EvalResult, list[dict], ScriptedGenerator]:
    generator = ScriptedGenerator(SCRIPT)
    seen: list[dict] = []
    options: dict[str, object] = {"n": 4, "ks": (1, 2, 4), "batch_size": 8}
    options["on_samples"] = seen.extend
    options.update(kwargs)
    result = evaluate_problems(
        generator,
        PROBLEMS,
        template="chat",
        sampling=SAMPLING,
        verifier=verifier,
        **options,  # type: ignore[arg-type]
    )
    return result, seen, generator


def test_scores_match_hand_computation(verifier: Verifier) -> None:
    result, _, _ = run(verifier)
    assert result.num_problems == 3 and result.n == 4 and result.num_samples == 12
    # c = 2, 1, 2 of n = 4.
    assert result.accuracy == pytest.approx((2 / 4 + 1 / 4 + 2 / 4) / 3)
    pass2 = [1 - 1 / 6, 1 - 3 / 6, 1 - 1 / 6]  # 1 - C(n-c, 2) / C(4, 2)
    assert result.pass_at_k[2] == pytest.approx(sum(pass2) / 3)
    assert result.pass_at_k[4] == pytest.approx(1.0)
    # maj@1 = first sample's verdict; maj@2 for "5 times 2" is 12 (the truncated one abstains).
    assert result.maj_at_k[1] == pytest.approx(1 / 3)
    assert result.maj_at_k[2] == pytest.approx(1 / 3)
    assert result.maj_at_k[4] == pytest.approx(2 / 3)  # half (tie, first) and ten, not seven
    assert result.truncation_rate == pytest.approx(1 / 12)
    assert result.no_answer_rate == pytest.approx(1 / 12)
    assert result.mean_response_tokens == pytest.approx(3 + 1.5)
    assert result.sampling["n"] == 4 and result.sampling["temperature"] == 1.0
    assert result.template == "chat"


def test_breakdowns_by_subject_and_level(verifier: Verifier) -> None:
    result, _, _ = run(verifier)
    assert list(result.by_level) == ["1", "2"]
    assert result.by_level["2"]["num_problems"] == 1
    assert result.by_level["2"]["accuracy"] == pytest.approx(0.5)
    assert result.by_subject["Prealgebra"]["accuracy"] == pytest.approx((0.25 + 0.5) / 2)
    assert result.by_subject["Prealgebra"]["maj_at_k"][4] == pytest.approx(0.5)
    as_json = result.to_dict()
    assert as_json["pass_at_k"]["4"] == pytest.approx(1.0)
    assert as_json["by_level"]["1"]["pass_at_k"]["2"] == pytest.approx((1 / 2 + 5 / 6) / 2)


def test_records_and_chunks(verifier: Verifier) -> None:
    _, seen, generator = run(verifier, batch_size=8)
    # 8 sequences per chunk at n = 4: two problems, then one; chunk j is seeded seed + j.
    assert generator.calls == [(2, 3), (1, 4)]
    assert sorted((r["problem_id"], r["sample"]) for r in seen) == sorted(
        (p.id, s) for p in PROBLEMS for s in range(4)
    )
    fields = {"problem_id", "sample", "prompt", "response", "gold", "extracted", "correct"}
    fields |= {"reason", "response_tokens", "truncated", "finish_reason"}
    assert all(fields <= set(r) for r in seen)
    by_key = {(r["problem_id"], r["sample"]): r for r in seen}
    assert by_key[("p/half", 3)]["correct"] is True
    assert by_key[("p/seven", 1)]["extracted"] in (None, "")
    assert by_key[("p/ten", 1)]["truncated"] is True and by_key[("p/ten", 1)]["correct"] is False
    assert "What is 3 plus 4?" in by_key[("p/seven", 0)]["prompt"]


def test_previous_records_are_not_generated_again(verifier: Verifier) -> None:
    full, seen, _ = run(verifier, batch_size=4)  # one problem per chunk
    first_chunk = {r["problem_id"] for r in seen[:4]}
    previous = [r for r in seen if r["problem_id"] in first_chunk]
    resumed, fresh, generator = run(verifier, batch_size=4, previous=previous)
    assert len(generator.calls) == 2 and len(fresh) == 8
    assert {r["problem_id"] for r in fresh}.isdisjoint(first_chunk)
    assert resumed.to_dict() | {"wall_time_s": 0} == full.to_dict() | {"wall_time_s": 0}


def test_bad_arguments(verifier: Verifier) -> None:
    with pytest.raises(ValueError, match="k must be"):
        run(verifier, n=2, ks=(1, 4))
    with pytest.raises(ValueError, match="unique"):
        evaluate_problems(
            ScriptedGenerator(SCRIPT),
            [PROBLEMS[0], PROBLEMS[0]],
            template="chat",
            sampling=SAMPLING,
            verifier=verifier,
        )


def test_an_error_in_on_samples_propagates(verifier: Verifier) -> None:
    calls = []

    def stop(records: list[dict]) -> None:
        calls.append(len(records))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(verifier, batch_size=4, on_samples=stop)
    assert calls == [4]  # reported once, never twice


def test_equivalent_wrong_answers_pool_their_votes(verifier: Verifier) -> None:
    # 1/2 and 0.5 are one (wrong) answer with two votes; kept apart, 3 would win the 1-1-1 tie.
    problem = Problem(id="p/three", question="What is 6 divided by 2?", answer="3")
    script: dict[str, list[str | None]] = {
        "6 divided by 2": ["\\boxed{3}", "\\boxed{1/2}", "It is \\boxed{0.5}."]
    }
    result = evaluate_problems(
        ScriptedGenerator(script),
        [problem],
        template="chat",
        sampling=SAMPLING,
        verifier=verifier,
        n=3,
        ks=(1, 3),
    )
    assert result.maj_at_k == {1: 1.0, 3: 0.0}
    assert result.pass_at_k[3] == 1.0


def test_without_a_verifier_a_strict_one_is_used() -> None:
    result = evaluate_problems(
        ScriptedGenerator(SCRIPT), PROBLEMS, template="chat", sampling=SAMPLING, n=4, ks=(4,)
    )
    assert result.accuracy == pytest.approx((2 / 4 + 1 / 4 + 2 / 4) / 3)
    assert result.maj_at_k[4] == pytest.approx(2 / 3)
