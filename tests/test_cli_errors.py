"""Every input mistake of ``oreal train`` is one line, exit code 2, no traceback, nothing
written, and found before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import oreal.train.build as build
from oreal.cli import app

runner = CliRunner()


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(build, "load_policy", refuse)


def fields_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "1+1", "solution": "2"}) + "\n")
    return path


CASES = {
    "missing model path": (["model.name_or_path=./no/such/model"], "model path not found"),
    "missing reward file": (["reward.functions=[/no/such/file.py:reward]"], "file not found"),
    "missing reward function": ([f"reward.functions=[{__file__}:nothing]"], "no attribute"),
    "not a module path": (["reward.functions=[notamodulepath]"], "expected 'module:function'"),
    "the old reward key": (["reward.function=my.module:f"], "replaced by reward.functions"),
    "bad data.train": (["data.train=no_such_set"], "data.train: unknown data source"),
    "unknown template": (["data.template=boxd"], "unknown prompt template 'boxd'"),
    "cuda on a CPU build": (["model.device=cuda"], "model.device=cuda"),
    "non-finite value": (["optim.lr=inf"], "finite"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_input_errors_are_one_line_exit_2(case: str, tmp_path: Path, no_model_loads: None) -> None:
    overrides, expected = CASES[case]
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", *overrides, "--run-dir", str(run_dir)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1], result.output
    assert "Traceback" not in result.output
    assert not run_dir.exists()  # nothing half-written


def test_a_data_file_without_its_fields(tmp_path: Path, no_model_loads: None) -> None:
    data = fields_file(tmp_path)
    result = runner.invoke(app, ["train", f"data.train={data}", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "missing field 'question'" in result.output and "data.question_field" in result.output
    fixed = [f"data.train={data}", "data.question_field=problem", "data.answer_field=solution"]
    result = runner.invoke(app, ["train", *fixed, "--run-dir", str(tmp_path / "fixed")])
    # With the fields named, every check passes and the next thing is loading the model.
    assert "a model was loaded" in str(result.exception)


def test_an_existing_run_directory(tmp_path: Path, no_model_loads: None) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir)])
    assert result.exit_code == 2 and "already holds a run" in result.output
    assert "--resume" in result.output


def test_long_messages_are_not_wrapped(tmp_path: Path, no_model_loads: None) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "model"
    result = runner.invoke(app, ["train", f"model.name_or_path={deep}"])
    assert f"model path not found: {deep}" in result.output  # one line, whatever the width


def test_version() -> None:
    from oreal import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"oreal {__version__}"
