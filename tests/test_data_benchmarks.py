"""The bundled sets: sizes, ids and the per-set normalisation of real rows."""

from __future__ import annotations

import logging

import pytest

from oreal.data import benchmarks as benchmarks_module
from oreal.data import extract_last_boxed, list_benchmarks, load_benchmark

SIZES = {
    "math500": 500,
    "gsm8k": 1319,
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "minerva_math": 272,
    "olympiadbench": 675,
    "math_train": 7470,  # 7,474 rows, 2 with answer null and 2 with an empty answer
    "gsm8k_train": 7473,
}


def by_id(name: str) -> dict:
    return {problem.id: problem for problem in load_benchmark(name)}


@pytest.mark.parametrize(("name", "size"), SIZES.items())
def test_sizes_and_unique_ids(name: str, size: int) -> None:
    problems = load_benchmark(name)
    assert len(problems) == size
    assert len({problem.id for problem in problems}) == size
    assert all(problem.id.startswith(name + "/") for problem in problems)


def test_list_benchmarks_matches_what_loads() -> None:
    infos = {info.name: info for info in list_benchmarks()}
    assert {name: info.size for name, info in infos.items()} == SIZES
    assert infos["math_train"].skipped == 4
    assert infos["math_train"].kind == "train" and infos["aime24"].kind == "eval"
    assert all(info.license and info.source and info.description for info in infos.values())


def test_limit_and_unknown_name() -> None:
    assert [p.id for p in load_benchmark("aime24", limit=2)] == ["aime24/60", "aime24/61"]
    assert load_benchmark("aime24", limit=0) == []
    with pytest.raises(ValueError, match=r"Did you mean 'math500'\?.*olympiadbench"):
        load_benchmark("math5000")


def test_math500_ids_subject_and_level() -> None:
    first = load_benchmark("math500", limit=1)[0]
    assert first.id == "math500/test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata["subject"] == "Precalculus"
    assert first.metadata["level"] == 2 and isinstance(first.metadata["level"], int)
    assert "\\boxed" in first.metadata["solution"]


def test_gsm8k_final_answer_commas_and_solution() -> None:
    problems = load_benchmark("gsm8k")
    first = problems[0]
    assert first.answer == "18"
    assert first.metadata["solution"].endswith("every day at the farmer\u2019s market.")
    assert "####" not in first.metadata["solution"]
    with_comma = [p for p in problems if "," in p.metadata["raw_answer"]]
    assert with_comma, "the GSM8K test split has comma-grouped answers"
    assert all(p.answer == p.metadata["raw_answer"].replace(",", "") for p in with_comma)
    assert all(p.answer.lstrip("-").isdigit() for p in problems)


def test_gsm8k_comma_examples() -> None:
    assert load_benchmark("gsm8k")[611].answer == "1450000"  # "#### 1,450,000" on line 612
    problems = load_benchmark("gsm8k_train")
    raw = {p.metadata["raw_answer"]: p.answer for p in problems}
    assert raw["1,080"] == "1080"


def test_aime24_zero_padded_answers() -> None:
    problem = by_id("aime24")["aime24/67"]
    assert problem.metadata["raw_answer"] == "025"
    assert problem.answer == "25"
    assert by_id("aime24")["aime24/75"].answer == "73"


def test_aime25_and_amc23_float_answers() -> None:
    aime = load_benchmark("aime25")[0]
    assert (aime.answer, aime.metadata["raw_answer"]) == ("70", 70.0)
    assert aime.metadata["contest"] == "AIME 2025 I"
    assert load_benchmark("aime25")[15].metadata["contest"] == "AIME 2025 II"
    amc = by_id("amc23")
    assert (amc["amc23/0"].answer, amc["amc23/0"].metadata["raw_answer"]) == ("27", 27.0)
    assert amc["amc23/17"].answer == "-1"
    assert all("." not in p.answer for p in amc.values())


def test_minerva_answer_is_the_last_box() -> None:
    problems = by_id("minerva_math")
    assert problems["minerva_math/0"].answer == "1.6"
    assert problems["minerva_math/1"].answer == "4.5e33"
    assert all(p.metadata["solution"] for p in problems.values())


def test_extract_last_boxed_balances_braces() -> None:
    assert extract_last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert extract_last_boxed("\\boxed {x^{2}}") == "x^{2}"
    assert extract_last_boxed("\\fbox{7}") == "7"
    assert extract_last_boxed("no box") is None
    assert extract_last_boxed("\\boxed{unclosed") is None


def test_olympiadbench_answers() -> None:
    problems = by_id("olympiadbench")
    two = problems["olympiadbench/1664"]  # final_answer ["$69$,$84$"]
    assert two.answer == ["69", "84"]
    assert two.metadata["raw_answer"] == ["$69$,$84$"]
    assert two.metadata["is_multiple_answer"] is True
    tuples = problems["olympiadbench/1618"]  # ["$(1,8,19), (2,7,13), (4,5,7)$"]
    assert tuples.answer == ["(1,8,19)", "(2,7,13)", "(4,5,7)"]
    assert problems["olympiadbench/1709"].answer == ["1", "3", "5"]  # no dollars at all
    assert problems["olympiadbench/2639"].answer == "(\\frac{1}{4}, \\frac{1}{27})"
    single = problems["olympiadbench/2334"]
    assert single.answer == "\\frac{41}{12}"
    assert single.metadata["unit"] == "km"
    assert single.metadata["answer_type"] == "Numerical"
    prose = problems["olympiadbench/1965"]
    assert isinstance(prose.answer, str) and prose.answer.startswith("f(x)=a x+b, where")
    assert problems["olympiadbench/1687"].answer == "f(n)=n, g(n)=1"  # one answer, two parts
    assert all("$" not in a for p in problems.values() for a in p.answers)


def test_math_train_skips_rows_without_answer_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    benchmarks_module._load.cache_clear()
    with caplog.at_level(logging.WARNING, logger="oreal.data.benchmarks"):
        problems = load_benchmark("math_train")
        load_benchmark("math_train")
    warnings = [r for r in caplog.records if "math_train" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 4" in warnings[0].getMessage()
    ids = {p.id for p in problems}
    assert {"math_train/886", "math_train/1009", "math_train/5328"}.isdisjoint(ids)
    assert "math_train/0" in ids
    assert {p.metadata["level"] for p in problems} == {1, 2, 3, 4, 5, None}


def test_returned_lists_are_copies() -> None:
    first = load_benchmark("aime24")
    first.clear()
    assert len(load_benchmark("aime24")) == 30
