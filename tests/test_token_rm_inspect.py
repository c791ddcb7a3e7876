"""``oreal inspect``: token-weight colouring in the terminal and as self-contained HTML."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oreal.cli.inspect import inspect_command
from oreal.token_rm.inspect_view import NO_RM_NOTE, load_step, render_html
from oreal.train import Trainer
from oreal.train.config import OrealConfig

TinyConfig = Callable[..., OrealConfig]  # the conftest fixture's factory
runner = CliRunner()
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(inspect_command)


@pytest.fixture(scope="module")
def rm_run(tiny_rm_config: TinyConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("inspect") / "run"
    Trainer(args=tiny_rm_config(run_dir, "token_rm.policy_freeze_steps=1", "train.steps=3")).train()
    return run_dir


def write_samples(run_dir: Path, samples: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(sample) for sample in samples]
    (run_dir / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run_dir


def test_inspect_a_tiny_rm_run_in_the_terminal_and_as_html(rm_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "view.html"
    result = runner.invoke(app, [str(rm_run), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "step 3" in result.output and "w+" in result.output and "w-" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and "http" not in page  # self-contained, no network
    assert "rgba(22, 163, 74" in page or "rgba(220, 38, 38" in page  # something is coloured
    # An earlier step and a limit.
    result = runner.invoke(app, [str(rm_run), "--step", "1", "--limit", "1"])
    assert result.exit_code == 0 and "sample 1" in result.output and "sample 2" not in result.output


def test_inspect_errors_exit_with_code_2(rm_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, [str(rm_run), "--step", "99"])
    assert result.exit_code == 2 and "step 99 was not logged" in result.output
    assert "logged steps: 1, 2, 3" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, [str(empty)])
    assert result.exit_code == 2 and "no samples.jsonl" in result.output
    write_samples(empty, [])
    assert runner.invoke(app, [str(empty)]).exit_code == 2


def test_html_escapes_model_text_and_colours_by_weight(tmp_path: Path) -> None:
    sample = {
        "step": 5,
        "prompt": "<b>2 & 3</b>",
        "response": "<script>alert(1)</script>",
        "reward": 0.0,
        "kept": True,
        "positive": False,
        "tokens": ["<script>", "alert(1)", "</script>"],
        "token_weights": [0.0, 0.25, 1.0],
        "token_q": [0.5, 0.375, 0.0],
    }
    run_dir = write_samples(tmp_path / "run", [sample])
    page = render_html(load_step(run_dir))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;2 &amp; 3" in page
    assert "rgba(220, 38, 38, 0.250)" in page and "rgba(220, 38, 38, 1.000)" in page
    assert "rgba(22, 163, 74" not in page  # a wrong response is never green
    assert 'title="w=0.250 q=0.375"' in page


def test_runs_without_a_token_rm_render_uncoloured_with_a_note(tmp_path: Path) -> None:
    samples = [
        {"step": 1, "prompt": "p", "response": "old format", "reward": 1.0, "kept": True},
        {
            "step": 2,
            "prompt": "p",
            "response": "ab",
            "reward": 1.0,
            "kept": True,
            "tokens": ["a", "b"],
        },
    ]
    run_dir = write_samples(tmp_path / "run", samples)
    result = runner.invoke(app, [str(run_dir), "--html", str(tmp_path / "out.html")])
    assert result.exit_code == 0
    assert "no token-level reward model" in result.output
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert NO_RM_NOTE in page and "rgba(" not in page and ">ab<" in page.replace("\n", "")
    result = runner.invoke(app, [str(run_dir), "--step", "1"])
    assert result.exit_code == 0 and "old format" in result.output
