"""`oreal train` argument handling: every bad input is a clear message and exit code 2."""

from pathlib import Path

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
