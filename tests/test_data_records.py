"""The Problem record and answer canonicalisation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oreal.data import DataError, Problem, canonical_answer, canonical_number


def test_problem_is_frozen_and_hashable() -> None:
    problem = Problem(id="a/0", question="What is 1 + 1?", answer="2", metadata={"x": [1]})
    with pytest.raises(ValidationError):
        problem.answer = "3"  # type: ignore[misc]
    same = Problem(id="a/0", question="What is 1 + 1?", answer="2", metadata={"x": [1]})
    assert len({problem, same}) == 1
    assert problem.answers == ["2"]


def test_one_element_list_is_stored_as_string_and_lists_keep_order() -> None:
    assert Problem(id="a", question="q", answer=["5"]).answer == "5"
    many = Problem(id="a", question="q", answer=["1", "3"])
    assert many.answer == ["1", "3"]
    assert many.answers == ["1", "3"]


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "", "question": "q", "answer": "1"},
        {"id": "a", "question": "   ", "answer": "1"},
        {"id": "a", "question": "q", "answer": ""},
        {"id": "a", "question": "q", "answer": []},
        {"id": "a", "question": "q", "answer": ["1", " "]},
        {"id": "a", "question": "q", "answer": "1", "extra": 1},
    ],
)
def test_invalid_problems_are_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        Problem(**fields)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (70.0, "70"),
        (-1.0, "-1"),
        (0.5, "0.5"),
        (1e-05, "0.00001"),
        (12, "12"),
        ("025", "25"),
        ("70.0", "70"),
        ("-0", "0"),
        ("2.50", "2.5"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
    ],
)
def test_canonical_number(value: object, expected: str) -> None:
    assert canonical_number(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, float("nan"), float("inf")])
def test_canonical_number_rejects_non_answers(value: object) -> None:
    with pytest.raises(ValueError):
        canonical_number(value)  # type: ignore[arg-type]


def test_canonical_answer() -> None:
    assert canonical_answer(" 025 ") == "025"  # user strings are only stripped
    assert canonical_answer(3.0) == "3"
    assert canonical_answer([1, "x "]) == ["1", "x"]
    assert canonical_answer(["7"]) == "7"
    for bad in (None, "", {"a": 1}, [], [[1, 2], 3]):
        with pytest.raises(ValueError):
            canonical_answer(bad)


def test_data_error_message_names_the_position() -> None:
    assert str(DataError("f.jsonl", "bad", line=3)) == "f.jsonl, line 3: bad"
    assert str(DataError("f.json", "bad", row=0)) == "f.json, row 0: bad"
    error = DataError("f.json", "bad")
    assert isinstance(error, ValueError)
    assert str(error) == "f.json: bad"
