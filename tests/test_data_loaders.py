"""Loading the user's own data: files, saved datasets, the hub path, and clear row errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from oreal.data import DataError, load_problems


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


ROWS = [
    {"question": "What is 2 + 2?", "answer": 4, "topic": "add"},
    {"question": "Half of 3?", "answer": 1.5},
    {"question": "Name the set.", "answer": ["1", 2.0]},
    {"question": "Padded?", "answer": " 025 "},
]


def test_jsonl_with_numbers_lists_and_metadata(tmp_path: Path) -> None:
    problems = load_problems(str(write_jsonl(tmp_path / "mine.jsonl", ROWS)))
    assert [p.answer for p in problems] == ["4", "1.5", ["1", "2"], "025"]
    assert [p.id for p in problems] == ["mine/0", "mine/1", "mine/2", "mine/3"]
    assert problems[0].metadata == {"source": str(tmp_path / "mine.jsonl"), "topic": "add"}


def test_json_array_object_and_json_lines_in_a_json_file(tmp_path: Path) -> None:
    array = tmp_path / "array.json"
    array.write_text(json.dumps(ROWS))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": ROWS}))
    lines = write_jsonl(tmp_path / "lines.json", ROWS)
    for path in (array, wrapped, lines):
        assert [p.question for p in load_problems(str(path))] == [r["question"] for r in ROWS]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(DataError, match="'data' list"):
        load_problems(str(bad))


def test_field_mapping_id_field_and_limit(tmp_path: Path) -> None:
    rows = [{"problem": f"Q{i}", "solution_value": str(i), "uid": f"u{i}"} for i in range(5)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    problems = load_problems(
        str(path), question_field="problem", answer_field="solution_value", id_field="uid", limit=3
    )
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("u0", "Q0", "0"),
        ("u1", "Q1", "1"),
        ("u2", "Q2", "2"),
    ]
    assert "uid" not in problems[0].metadata


def test_missing_field_error_names_line_and_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "a", "answer": "1"}, {"problem": "b"}])
    with pytest.raises(DataError) as caught:
        load_problems(str(path))
    assert caught.value.line == 2
    assert "line 2: missing field 'question'" in str(caught.value)
    assert "'problem'" in str(caught.value) and "question_field" in str(caught.value)


def test_bad_json_line_number_counts_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", answer}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 3: bad JSON"):
        load_problems(str(path))


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"question": "  ", "answer": "1"}, "empty question"),
        ({"question": 5, "answer": "1"}, "question must be a string"),
        ({"question": "q", "answer": None}, "answer is missing"),
        ({"question": "q", "answer": {"v": 1}}, "answer has type dict"),
        ({"question": "q", "answer": True}, "boolean"),
        ("just a string", "expected an object"),
    ],
)
def test_bad_rows_in_a_json_array_name_the_row(tmp_path: Path, row: object, reason: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"question": "ok", "answer": "1"}, row]))
    with pytest.raises(DataError, match=rf"d\.json, row 1: .*{reason}") as caught:
        load_problems(str(path))
    assert caught.value.row == 1 and caught.value.line is None


def test_duplicate_ids_and_skip_invalid(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"id": "x", "question": "a", "answer": "1"},
        {"id": "x", "question": "b", "answer": "2"},
        {"id": "y", "question": "c"},
        {"id": "z", "question": "d", "answer": "4"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match="line 2: duplicate id 'x' \\(first seen at line 1\\)"):
        load_problems(str(path), id_field="id")
    with caplog.at_level(logging.WARNING):
        kept = load_problems(str(path), id_field="id", skip_invalid=True)
    assert [p.id for p in kept] == ["x", "z"]
    assert "skipped 2 invalid rows" in caplog.text


def test_parquet_and_csv(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    table = pyarrow.table({"question": ["Q1", "Q2"], "answer": [3.0, 4.5], "level": [1, 2]})
    parquet.write_table(table, tmp_path / "t.parquet")
    problems = load_problems(str(tmp_path / "t.parquet"))
    assert [(p.answer, p.metadata["level"]) for p in problems] == [("3", 1), ("4.5", 2)]

    (tmp_path / "t.csv").write_text('question,answer\n"Q, with comma",7\n"",8\n')
    with pytest.raises(DataError, match=r"t\.csv, line 3: empty question"):
        load_problems(str(tmp_path / "t.csv"))


def test_saved_dataset_and_dataset_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list([{"q": "Q0", "a": 1}, {"q": "Q1", "a": 2}])
    data.save_to_disk(str(tmp_path / "single"))
    problems = load_problems(str(tmp_path / "single"), question_field="q", answer_field="a")
    assert [(p.id, p.answer) for p in problems] == [("single/0", "1"), ("single/1", "2")]

    splits = datasets.DatasetDict({"train": data, "test": data.select([1])})
    splits.save_to_disk(str(tmp_path / "dict"))
    test = load_problems(str(tmp_path / "dict"), question_field="q", answer_field="a", split="test")
    assert [p.question for p in test] == ["Q1"]
    with pytest.raises(ValueError, match="no split 'validation'; splits: train, test"):
        load_problems(str(tmp_path / "dict"), split="validation")


def test_hub_code_path_with_a_local_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``owner/name`` and ``hf:`` go through datasets.load_dataset with config and split."""
    datasets = pytest.importorskip("datasets")
    calls: list[tuple] = []
    local = datasets.Dataset.from_list([{"question": "Q", "answer": 42.0}] * 3)

    def fake_load_dataset(name: str, config: str | None = None, split: str | None = None):
        calls.append((name, config, split))
        return local

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_problems("hf:someone/maths?config=main&split=test", limit=2)
    assert calls == [("someone/maths", "main", "test")]
    assert [(p.id, p.answer) for p in problems] == [
        ("someone/maths/test/0", "42"),
        ("someone/maths/test/1", "42"),
    ]
    load_problems("someone/maths", split="validation")
    assert calls[-1] == ("someone/maths", None, "validation")


def test_hf_prefix_with_a_local_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    path = write_jsonl(tmp_path / "local.jsonl", ROWS[:2])
    problems = load_problems(f"hf:{path}")
    assert [p.answer for p in problems] == ["4", "1.5"]


def test_source_resolution(tmp_path: Path) -> None:
    assert len(load_problems("amc23", limit=3)) == 3
    assert len(load_problems("synthetic:arithmetic?n=4")) == 4
    with pytest.raises(ValueError, match="Did you mean 'olympiadbench'"):
        load_problems("olympiadbnch")
    with pytest.raises(ValueError, match="file not found"):
        load_problems(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="not a saved dataset"):
        load_problems(str(tmp_path))
    with pytest.raises(ValueError, match="limit"):
        load_problems("amc23", limit=-1)
