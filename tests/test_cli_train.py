"""`oreal train` from the command line: every bad input is a clear message and exit code 2,
and one whole run on a tiny model."""

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from oreal.cli import app

runner = CliRunner()


def test_unknown_key_names_the_closest_one() -> None:
    result = runner.invoke(app, ["train", "optim.lrr=1e-5"])
    assert result.exit_code == 2
    assert "did you mean 'optim.lr'" in result.output


def test_unknown_preset_lists_the_presets() -> None:
    result = runner.invoke(app, ["train", "no_such_preset"])
    assert result.exit_code == 2
    assert "demo" in result.output and "demo_grpo" in result.output


def test_bad_value_is_rejected_before_any_work(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "demo", "rollout.num_rollouts=1", f"train.run_dir={run_dir}"]
    )
    assert result.exit_code == 2
    assert "num_rollouts" in result.output
    assert not run_dir.exists()


def test_resume_needs_a_run_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output
    result = runner.invoke(app, ["train", "demo", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "own config" in result.output


def test_help_lists_the_presets() -> None:
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "demo_grpo" in result.output


def test_train_end_to_end_on_a_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The demo preset with a tiny model swapped in: evals, one step, summary, --threads."""
    run_dir = tmp_path / "run"
    arguments = [
        "train",
        f"model.name_or_path={tiny_model_dir}",
        "model.bf16_autocast=false",
        "model.device=cpu",
        "data.train=synthetic:arithmetic?n=16&seed=0",
        "data.eval_limit=2",
        "rollout.prompts_per_step=2",
        "rollout.num_rollouts=2",
        "rollout.max_new_tokens=4",
        "train.steps=1",
        "train.plot=false",
        "--run-dir",
        str(run_dir),
        "--threads",
        "2",
    ]
    try:
        result = runner.invoke(app, arguments)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # conftest's setting, for the tests that follow
    assert result.exit_code == 0, result.output
    assert "eval before training: 0/2" in result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["eval_problems"] == 2
    assert summary["eval_accuracy_before"] == 0.0
    assert (run_dir / "checkpoints" / "step-000001").is_dir()
