"""End-to-end trainer tests on a tiny random model (built offline, seconds on a CPU)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from oreal.config_io import ConfigError
from oreal.train import Trainer
from oreal.train.config import OrealConfig

TinyConfig = Callable[..., OrealConfig]  # the conftest fixture's factory


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    return load_file(str(checkpoints[-1] / "policy" / "model.safetensors"))


BF16_WEIGHTS = ("model.bf16_autocast=true", "model.param_dtype=bfloat16")


@pytest.mark.parametrize("precision", [(), BF16_WEIGHTS], ids=["fp32", "bf16_weights"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tiny_config: TinyConfig, tiny_model_dir: Path, tmp_path: Path, precision: tuple[str, ...]
) -> None:
    settings = (
        "train.steps=4",
        "optim.lr=1e-3",
        "algorithm.name=grpo",
        "algorithm.params.kl_coef=0.01",
        *precision,
    )
    straight = Trainer(args=tiny_config(tmp_path / "straight", *settings))
    straight.train()

    interrupted = Trainer(args=tiny_config(tmp_path / "resumed", *settings))
    interrupted.train_step()
    interrupted.train_step()
    interrupted.save()
    del interrupted
    resumed = Trainer(
        args=tiny_config(tmp_path / "resumed", *settings),
        resume_from=tmp_path / "resumed",
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


def test_run_directory_records(tiny_config: TinyConfig, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trainer = Trainer(args=tiny_config(run_dir, "train.steps=2", "train.checkpoint_every=1"))
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


def test_refuses_to_overwrite_a_run(tiny_config: TinyConfig, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    Trainer(args=tiny_config(run_dir, "train.steps=1")).train()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(args=tiny_config(run_dir, "train.steps=1"))


@pytest.mark.parametrize("algorithm", ["oreal", "grpo"])
def test_reward_rises_on_a_trivial_task(
    tiny_config: TinyConfig, tmp_path: Path, algorithm: str
) -> None:
    trainer = Trainer(
        args=tiny_config(
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


def test_truncated_importance_sampling_weights_the_policy_term(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    """rollout.tis_cap: the engine's sampled log-probs against the trainer's (Yao et al. 2025)."""
    settings = ("algorithm.name=grpo", "rollout.tis_cap=2.0", "model.bf16_autocast=true")
    trainer = Trainer(args=tiny_config(tmp_path / "run", *settings, reward="has_digit"))
    record = trainer.train_step()
    assert 0.5 < record["is_ratio_mean"] < 2.0 and record["engine_kl_k3"] >= 0.0
    assert trainer.last_batch is not None
    rows = [row for row in trainer.last_batch if row.keep]
    assert all(row.sampled_logprobs is not None for row in rows)
    weights = torch.cat([row.token_weights for row in rows])
    assert (weights > 0).all() and (weights <= 2.0).all() and not torch.all(weights == 1.0)
    with pytest.raises(ConfigError, match="tis_cap needs the engine's log-probs"):
        tiny_config(tmp_path / "hf", *settings, "rollout.backend=hf")
