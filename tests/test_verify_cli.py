"""``oreal verify``: single checks, JSONL files, exit codes and atomic ``--out``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oreal.cli import app

runner = CliRunner()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_single_check_prints_a_json_verdict() -> None:
    result = runner.invoke(app, ["verify", "--gold", "25", "--response", r"so \boxed{025}"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"correct": True, "extracted": "025", "reason": "match"}


def test_single_check_modes_and_truncation() -> None:
    args = ["verify", "--gold", "5", "--response", "The answer is 5."]
    assert json.loads(runner.invoke(app, args).stdout)["reason"] == "no_answer"
    lenient = runner.invoke(app, [*args, "--mode", "lenient"])
    assert json.loads(lenient.stdout)["correct"] is True
    cut = runner.invoke(app, ["verify", "--gold", "5", "--response", r"\boxed{5}", "--truncated"])
    assert json.loads(cut.stdout)["reason"] == "truncated"


def test_file_to_stdout_with_summary(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": 1, "gold": "5", "response": r"\boxed{5}"}),
            json.dumps({"answer": ["3", "5"], "response": r"\boxed{5, 3}", "truncated": False}),
            "",
            json.dumps({"gold": "x+1", "response": r"\boxed{1+x}", "truncated": True}),
            json.dumps({"gold": "x+1", "response": r"\boxed{x+2}"}),
        ],
    )
    result = runner.invoke(app, ["verify", str(data)])
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert [r["reason"] for r in rows] == ["match", "match", "truncated", "mismatch"]
    assert rows[0]["id"] == 1 and rows[1]["extracted"] == "5, 3"
    assert "accuracy" in result.stderr and "0.5000" in result.stderr


def test_file_to_out_is_written_whole(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "in.jsonl",
        [json.dumps({"gold": str(i), "response": rf"\boxed{{{i}}}"}) for i in range(50)],
    )
    out = tmp_path / "sub" / "out.jsonl"
    result = runner.invoke(app, ["verify", str(data), "--out", str(out), "--mode", "lenient"])
    assert result.exit_code == 0, result.output
    rows = _rows(out.read_text(encoding="utf-8"))
    assert len(rows) == 50 and all(r["correct"] for r in rows)
    assert "50" in result.stdout and "1.0000" in result.stdout
    assert [p.name for p in out.parent.iterdir()] == ["out.jsonl"]  # no temp file left


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 3: invalid JSON"),
        (json.dumps({"response": "x"}), "line 3: missing field 'gold'"),
        (json.dumps({"gold": "1"}), "line 3: missing field 'response'"),
        (json.dumps({"gold": True, "response": "x"}), "line 3: 'gold' must be a string"),
        (json.dumps({"gold": [], "response": "x"}), "line 3: 'gold' must be a string"),
        (json.dumps({"gold": {"a": 1}, "response": "x"}), "line 3: 'gold' must be a string"),
        (json.dumps({"gold": "5", "response": ["x"]}), "line 3: 'response' must be a string"),
        (json.dumps({"gold": "5", "response": "x", "truncated": "no"}), "line 3: 'truncated'"),
        (json.dumps(["gold", "response"]), "line 3: expected a JSON object"),
    ],
)
def test_malformed_line_stops_with_exit_2_and_writes_nothing(
    tmp_path: Path, bad_line: str, message: str
) -> None:
    good = json.dumps({"gold": "1", "response": r"\boxed{1}"})
    data = _write(tmp_path / "in.jsonl", [good, good, bad_line, good])
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n", encoding="utf-8")
    result = runner.invoke(app, ["verify", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert out.read_text(encoding="utf-8") == "previous results\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--gold", "5"],
        ["--response", "5"],
        ["FILE", "--gold", "5", "--response", "5"],
        ["FILE", "--response", "5"],
        ["--gold", "5", "--response", "5", "--mode", "loose"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    data = _write(tmp_path / "in.jsonl", [json.dumps({"gold": "1", "response": "1"})])
    args = [str(data) if a == "FILE" else a for a in args]
    result = runner.invoke(app, ["verify", *args])
    assert result.exit_code == 2, result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output


def test_large_file_runs_with_a_progress_bar(tmp_path: Path) -> None:
    lines = [json.dumps({"gold": str(i), "response": rf"\boxed{{0{i}}}"}) for i in range(1500)]
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app, ["verify", str(_write(tmp_path / "in.jsonl", lines)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = _rows(out.read_text(encoding="utf-8"))
    assert len(rows) == 1500 and all(r["reason"] == "match" for r in rows)


def test_numeric_golds_are_accepted_like_the_api(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "in.jsonl",
        [
            json.dumps({"gold": 7, "response": r"\boxed{7}"}),
            json.dumps({"gold": 70.0, "response": r"\boxed{70}"}),
            json.dumps({"answer": [3, "5"], "response": r"\boxed{5, 3}"}),
            json.dumps({"gold": 7, "response": r"\boxed{8}"}),
        ],
    )
    result = runner.invoke(app, ["verify", str(data)])
    assert result.exit_code == 0, result.output
    assert [r["reason"] for r in _rows(result.stdout)] == ["match", "match", "match", "mismatch"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["verify", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert "no rows to verify" in result.stderr
    assert not out.exists()


def test_every_bad_line_is_reported_up_to_a_cap(tmp_path: Path) -> None:
    good = json.dumps({"gold": "1", "response": r"\boxed{1}"})
    lines = [good] + ["{broken"] * 3 + [json.dumps({"gold": "1"})] + ["[1]"] * 30
    result = runner.invoke(app, ["verify", str(_write(tmp_path / "in.jsonl", lines))])
    assert result.exit_code == 2
    assert "34 bad line(s)" in result.stderr
    for number in (2, 3, 4):
        assert f"line {number}: invalid JSON" in result.stderr
    assert "line 5: missing field 'response'" in result.stderr
    assert "line 21: expected a JSON object" in result.stderr
    assert "line 22:" not in result.stderr  # 20 shown by number ...
    assert "... and 14 more" in result.stderr  # ... the rest counted


def test_invalid_utf8_is_a_bad_line_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    good = json.dumps({"gold": "1", "response": r"\boxed{1}"}).encode()
    data.write_bytes(good + b"\n" + b'{"gold": "1", "response": "\xff\xfe"}\n')
    result = runner.invoke(app, ["verify", str(data)])
    assert result.exit_code == 2
    assert "line 2: not valid UTF-8" in result.stderr
    assert "Traceback" not in result.output


HOSTILE_RESPONSES = [
    "lone surrogate \udcff then \\boxed{5}",
    "\\boxed{" * 1000 + "5" + "}" * 1000,
    "\\boxed{\ud800}",
    "\x00\\boxed{5}\x00",
]


def test_hostile_responses_get_verdicts_and_valid_utf8_output(tmp_path: Path) -> None:
    lines = [json.dumps({"gold": "5", "response": r}) for r in HOSTILE_RESPONSES]
    data = _write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["verify", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = out.read_bytes().decode("utf-8")  # strict: raises on invalid UTF-8
    rows = _rows(written)
    assert [r["response"] for r in rows] == HOSTILE_RESPONSES  # read back unchanged
    assert [r["reason"] for r in rows] == ["match", "match", "mismatch", "match"]
    to_stdout = runner.invoke(app, ["verify", str(data)])
    assert to_stdout.exit_code == 0, to_stdout.output
    printed = to_stdout.stdout_bytes.decode("utf-8")
    assert [r["response"] for r in _rows(printed)] == HOSTILE_RESPONSES


def test_single_check_with_a_lone_surrogate_prints_valid_utf8() -> None:
    result = runner.invoke(app, ["verify", "--gold", "\udcff", "--response", "\\boxed{\udcff}"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout_bytes.decode("utf-8")) == {
        "correct": True,
        "extracted": "\udcff",
        "reason": "match",
    }
