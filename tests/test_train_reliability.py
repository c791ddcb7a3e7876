"""Runs that survive faults and hostile input (issue #13, the trainer's items): no code from a
run directory, nothing lost on Ctrl-C, an error, a full disk or a NaN, and clean restarts."""

from __future__ import annotations

import errno
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from oreal.cli import app
from oreal.config_io import ConfigError, load_config
from oreal.rewards import RewardError
from oreal.train import Callback, OrealConfig, Trainer
from oreal.train.build import BuildError
from oreal.train.checkpoint import CheckpointError
from oreal.train.metrics import read_jsonl

TinyConfig = Callable[..., OrealConfig]
HERE = Path(__file__).resolve().parent
runner = CliRunner()


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step-{step:06d}" / "policy/model.safetensors"))


def steps_logged(run: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run / "metrics.jsonl")]


# --------------------------------------------------------------------------- 1. data, not code
class Boom:
    """Unpickling this runs os.system: what a crafted trainer_state.pt once did on --resume."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_in_a_checkpoint_is_never_loaded(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    run, marker = tmp_path / "run", tmp_path / "pwned"
    Trainer(args=tiny_config(run, "train.steps=1")).train()
    checkpoint = run / "checkpoints" / "step-000001"
    for name in ("trainer_state.pt", "optimizer/policy.pt", "token_rm.pt"):
        (checkpoint / name).write_bytes(pickle.dumps(Boom(marker)))
    resumed = Trainer(args=tiny_config(run, "train.steps=2"), resume_from=run)
    resumed.train()
    assert not marker.exists() and resumed.step == 2


def test_code_named_by_a_run_config_needs_allow_code(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    run, marker = tmp_path / "run", tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def reward(completions, **kwargs):\n    return [0.0] * len(completions)\n"
    )
    Trainer(args=tiny_config(run, "train.steps=1")).train()
    recorded = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(
        recorded.replace(f"{HERE / 'conftest.py'}:contains_seven", f"{evil}:reward")
    )
    result = runner.invoke(app, ["train", "--resume", str(run), "train.steps=2"])
    assert result.exit_code == 2 and "--allow-code" in result.output
    assert not marker.exists()
    result = runner.invoke(app, ["train", "--resume", str(run), "train.steps=2", "--allow-code"])
    assert result.exit_code == 0, result.output
    assert marker.exists()


# --------------------------------------------------------------------------- 5. kills, errors
class Interrupt(Callback):
    def __init__(self, at: int, error: BaseException) -> None:
        self.at, self.error = at, error

    def on_step_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if trainer.step == self.at:
            raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("a crash in a callback")])
def test_ctrl_c_and_errors_save_a_checkpoint_that_resumes_exactly(
    tiny_config: TinyConfig, tmp_path: Path, error: BaseException
) -> None:
    settings = ("train.steps=4", "optim.lr=1e-3", "algorithm.name=grpo")
    Trainer(args=tiny_config(tmp_path / "straight", *settings, reward="has_digit")).train()
    config = tiny_config(tmp_path / "cut", *settings, reward="has_digit")
    with pytest.raises(type(error)):
        Trainer(args=config, callbacks=[Interrupt(2, error)]).train()
    assert (tmp_path / "cut" / "checkpoints" / "step-000002").is_dir()
    Trainer(args=config, resume_from=tmp_path / "cut").train()
    straight, cut = weights(tmp_path / "straight", 4), weights(tmp_path / "cut", 4)
    assert all(torch.equal(straight[k], cut[k]) for k in straight)
    assert steps_logged(tmp_path / "cut") == [1, 2, 3, 4]


def failing_reward(completions: list[str], step: int, **kwargs: object) -> list[float]:
    if step == 2:
        raise RuntimeError("the reward service is down")
    return [1.0 if "7" in c else 0.0 for c in completions]


def test_an_error_inside_a_step_saves_the_last_complete_step(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny_config(run, "train.steps=4", "algorithm.name=grpo")
    trainer = Trainer(args=config, reward_funcs=[failing_reward])
    with pytest.raises(RuntimeError, match="service is down"):
        trainer.train()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]
    state = json.loads((run / "checkpoints/step-000002/trainer_state.json").read_text())
    assert state["step"] == 2 and state["data_position"] == 2 * 2  # step 3's draw put back


def test_a_run_killed_before_its_first_checkpoint_restarts(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny_config(run, "train.steps=2")
    first = Trainer(args=config)
    first.train_step()
    (run / "metrics.jsonl").write_text('{"step": 1, "reward_mean": 0.5}\n{"step": 2, "rew')
    first.close()  # a kill: no checkpoint, a torn log line
    result = runner.invoke(app, ["train", "--resume", str(run), "--allow-code"])  # conftest's
    assert result.exit_code == 0, result.output
    assert "starting the run over" in result.output
    assert steps_logged(run) == [1, 2]


# --------------------------------------------------------------------------- 6. logs
def test_logs_tolerate_a_torn_last_line_and_name_a_bad_file(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert [r["step"] for r in read_jsonl(log)] == [1, 2]
    log.write_text('{"step": 1}\n{not json}\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line 2"):
        read_jsonl(log)


def test_a_failed_rewrite_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oreal.atomic as atomic

    path = tmp_path / "samples.jsonl"
    path.write_text("old\n")

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(OSError):
        atomic.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.jsonl"]  # no temp left


# --------------------------------------------------------------------------- 7. non-finite
def nan_reward(completions: list[str], **kwargs: object) -> list[float]:
    return [float("nan")] * len(completions)


def test_non_finite_values_are_refused(tiny_config: TinyConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="finite"):
        load_config(OrealConfig, None, ["optim.lr=inf"])
    trainer = Trainer(args=tiny_config(tmp_path / "run", "algorithm.name=grpo"),
                      reward_funcs=[nan_reward])  # fmt: skip
    with pytest.raises(RewardError, match=r"nan_reward.*finite"):
        trainer.train_step()


def test_a_non_finite_update_is_skipped_and_never_saved(
    tiny_config: TinyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oreal.train.update as update

    run = tmp_path / "run"
    config = tiny_config(run, "algorithm.name=grpo", "optim.lr=1e-3", reward="has_digit")
    trainer = Trainer(args=config)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    real = update.compute_policy_loss

    def overflowing(*args: object, **kwargs: object) -> tuple:
        loss, parts = real(*args, **kwargs)
        return loss * float("inf"), parts  # what an overflow in the loss looks like

    monkeypatch.setattr(update, "compute_policy_loss", overflowing)
    record = trainer.train_step()
    assert record["skipped_nonfinite_updates"] == 1.0
    for key, value in trainer.policy.state_dict().items():
        assert torch.equal(value, before[key]), key
    with torch.no_grad():  # and should a NaN reach the weights, it is not saved
        trainer.policy.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        trainer.save()
    assert not (run / "checkpoints").exists()


# --------------------------------------------------------------------------- 8. hostile data
@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_training_file_is_an_error(
    tiny_config: TinyConfig, tmp_path: Path, content: str
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(content)
    with pytest.raises(BuildError, match="holds no problem"):
        Trainer(args=tiny_config(tmp_path / "run", f"data.train={data}"))


def test_a_huge_question_is_skipped_or_refused(tiny_config: TinyConfig, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    rows = [{"question": "1+1", "answer": "2"}, {"question": "x" * 5_000_000, "answer": "1"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    trainer = Trainer(args=tiny_config(tmp_path / "a", f"data.train={data}"))
    assert [p.question for p in trainer.train_problems] == ["1+1"]
    with pytest.raises(BuildError, match="over 64 tokens"):
        Trainer(
            args=tiny_config(
                tmp_path / "b",
                f"data.train={data}",
                "rollout.max_prompt_tokens=64",
                "rollout.long_prompts=error",
            )
        )


# --------------------------------------------------------------------------- 9. disks, damage
def test_a_full_disk_during_a_checkpoint_says_so(
    tiny_config: TinyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oreal.train.checkpoint as checkpoint

    run = tmp_path / "run"
    trainer = Trainer(args=tiny_config(run, "train.steps=1"))
    trainer.train_step()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(CheckpointError, match="no space left on the device of"):
        trainer.save()
    assert list((run / "checkpoints").iterdir()) == []  # nothing half-written, no .tmp


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_damaged_latest_checkpoint_falls_back(
    tiny_config: TinyConfig, tmp_path: Path, damage: str
) -> None:
    run = tmp_path / "run"
    Trainer(args=tiny_config(run, "train.steps=2", "train.checkpoint_every=1")).train()
    file = run / "checkpoints" / "step-000002" / "policy" / "model.safetensors"
    file.write_bytes(file.read_bytes()[:100] if damage == "truncate" else b"")
    result = runner.invoke(app, ["train", "--resume", str(run), "train.steps=3", "--allow-code"])
    assert result.exit_code == 0, result.output
    assert "skipping a damaged checkpoint" in result.output
    assert "resumed from" in result.output and "step-000001" in result.output


# --------------------------------------------------------------------------- 10. one writer
def test_one_process_per_run_directory(tiny_config: TinyConfig, tmp_path: Path) -> None:
    import os

    run = tmp_path / "run"
    first = Trainer(args=tiny_config(run, "train.steps=1"))
    with pytest.raises(ConfigError, match=f"in use by another oreal process \\(pid {os.getpid()}"):
        Trainer(args=tiny_config(run, "train.steps=1"), resume_from=run)
    first.close()
    Trainer(args=tiny_config(run, "train.steps=1"), resume_from=run).close()  # free again


def test_resume_records_overrides_and_threads_and_keeps_n_checkpoints(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny_config(
        run, "train.steps=1", "train.keep_checkpoints=2", "train.checkpoint_every=1"
    )
    Trainer(args=config).train()
    arguments = ["train", "--resume", str(run), "train.steps=3", "--threads", "1", "--allow-code"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    recorded = load_config(OrealConfig, run / "config.yaml")
    assert recorded.train.steps == 3 and recorded.train.threads == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
