"""End-to-end trainer tests on a tiny random model (built offline, seconds on a CPU)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from oreal.config_io import load_config
from oreal.data import Problem
from oreal.models import save_tiny
from oreal.train.config import OrealConfig
from oreal.train.loop import Trainer

THIS_FILE = Path(__file__).resolve()


def contains_seven(
    problems: Sequence[Problem], responses: Sequence[str], truncated: Sequence[bool]
) -> list[float]:
    """A trivial reward a random tiny model can learn in seconds: say '7' somewhere."""
    return [1.0 if "7" in response else 0.0 for response in responses]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "model"
    save_tiny(path)
    return path


def tiny_config(model_dir: Path, run_dir: Path, *overrides: str) -> OrealConfig:
    return load_config(
        OrealConfig,
        None,
        [
            f"model.name_or_path={model_dir}",
            "model.bf16_autocast=false",
            "model.device=cpu",
            "data.train=synthetic:arithmetic?n=32&seed=0",
            "data.eval=null",
            "rollout.prompts_per_step=2",
            "rollout.num_rollouts=4",
            "rollout.max_new_tokens=6",
            f"reward.function={THIS_FILE}:contains_seven",
            "train.micro_batch_size=3",
            "train.plot=false",
            "train.samples_per_step=2",
            f"train.run_dir={run_dir}",
            *overrides,
        ],
    )


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    return load_file(str(checkpoints[-1] / "policy" / "model.safetensors"))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = ("train.steps=4", "optim.lr=1e-3", "algorithm.name=grpo", "algorithm.kl_coef=0.01")
    straight = Trainer(tiny_config(tiny_model_dir, tmp_path / "straight", *settings))
    straight.train()

    interrupted = Trainer(tiny_config(tiny_model_dir, tmp_path / "resumed", *settings))
    interrupted.train_step()
    interrupted.train_step()
    interrupted.save()
    del interrupted
    resumed = Trainer(
        tiny_config(tiny_model_dir, tmp_path / "resumed", *settings),
        resume_dir=tmp_path / "resumed",
    )
    assert resumed.step == 2
    resumed.train()

    expected, actual = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert expected.keys() == actual.keys()
    initial = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).state_dict()
    moved = [k for k in expected if k in initial and not torch.equal(expected[k], initial[k])]
    assert moved, "training did not change the weights, so the comparison proves nothing"
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_run_directory_records(tiny_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trainer = Trainer(
        tiny_config(tiny_model_dir, run_dir, "train.steps=2", "train.checkpoint_every=1")
    )
    summary = trainer.train()
    assert summary["steps"] == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for key in ("reward_mean", "pass_rate", "groups_kept", "response_length", "truncation_rate"):
        assert key in records[0], key
    assert (run_dir / "config.yaml").is_file()
    assert len(list((run_dir / "checkpoints").iterdir())) == 2
    samples = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 4 and "response" in json.loads(samples[0])
    reloaded = AutoModelForCausalLM.from_pretrained(str(run_dir / "checkpoints/step-000002/policy"))
    assert reloaded.config.vocab_size == trainer.policy.config.vocab_size


def test_refuses_to_overwrite_a_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    Trainer(tiny_config(tiny_model_dir, run_dir, "train.steps=1")).train()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config(tiny_model_dir, run_dir, "train.steps=1"))


@pytest.mark.parametrize("algorithm", ["oreal", "grpo"])
def test_reward_rises_on_a_trivial_task(
    tiny_model_dir: Path, tmp_path: Path, algorithm: str
) -> None:
    trainer = Trainer(
        tiny_config(
            tiny_model_dir,
            tmp_path / algorithm,
            f"algorithm.name={algorithm}",
            "train.steps=16",
            "optim.lr=3e-3",
            "optim.min_lr_ratio=1.0",
            "rollout.prompts_per_step=4",
            "rollout.num_rollouts=8",
            "train.micro_batch_size=32",
            "train.samples_per_step=0",
        )
    )
    trainer.train()
    records = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").open()]
    rewards = [r["reward_mean"] for r in records]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.2, rewards
