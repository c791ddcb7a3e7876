"""``oreal data list`` and ``oreal data show`` through typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from oreal.cli.data import app

runner = CliRunner()


def test_list_shows_every_bundled_set() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("math500", "gsm8k_train", "olympiadbench", "minerva_math", "1319", "7470"):
        assert name in result.output


def test_show_json_lines() -> None:
    result = runner.invoke(app, ["show", "aime24", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["id"] for row in rows] == ["aime24/60", "aime24/61", "aime24/62"]
    assert rows[0]["answer"] == "204" and rows[0]["metadata"]["source"] == "aime24"


def test_show_rich_and_synthetic_spec() -> None:
    result = runner.invoke(app, ["show", "synthetic:arithmetic?n=2&seed=0"])
    assert result.exit_code == 0, result.output
    assert "What is 75 - 15?" in result.output and '"60"' in result.output
    assert "2 problem(s)" in result.output


def test_show_user_file_with_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"problem": "Q?", "sol": 3}) + "\n")
    args = ["show", str(path), "--question-field", "problem", "--answer-field", "sol", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["answer"] == "3"
    bad = runner.invoke(app, ["show", str(path)])
    assert bad.exit_code == 2  # bad input, like every user error
    assert "line 1: missing field 'question'" in bad.output


def test_unknown_name_exits_2() -> None:
    result = runner.invoke(app, ["show", "aime2024"])
    assert result.exit_code == 2
    assert "unknown data source 'aime2024'" in result.output
    assert "Did you mean" in result.output


def test_through_the_root_app() -> None:
    from oreal.cli import app as root

    result = runner.invoke(root, ["data", "show", "gsm8k", "-n", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["answer"] == "18"
