"""The TRL adapter inside TRL's own reward plumbing (skipped when trl is not installed): a real
``GRPOTrainer`` on the tiny test model computes rewards with it, next to TRL's
``accuracy_reward`` (through the trainer's ``_calculate_rewards``, as trl 1.16 has it), and runs
one training step with it as the only reward."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from trl.rewards import accuracy_reward

from oreal.integrations.trl import oreal_accuracy

HACKS = [  # (gold, completion): restated arithmetic and a negated box
    ("36", r"\boxed{97 - 61}"),
    ("54", r"\boxed{7 + 47}"),
    ("4", r"\boxed{2+2}"),
    ("70", r"The answer is not \boxed{70}"),
]


def _trainer(model_dir: Path, out_dir: Path, reward_funcs: list[Callable[..., Any]]) -> GRPOTrainer:
    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "What is 1+1?"}]] * 2,
            "answer": ["2", "2"],
            "solution": ["2", "2"],  # the column TRL's accuracy_reward reads
        }
    )
    config = GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
    )
    return GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
    )


def test_rewards_through_trl_and_the_four_hacks(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, [oreal_accuracy, accuracy_reward])
    rows = [*HACKS, ("36", r"so \boxed{36}")]
    inputs = [{"prompt": "q", "answer": gold, "solution": gold} for gold, _ in rows]
    completions = [[{"role": "assistant", "content": text}] for _, text in rows]
    prompts = [[{"role": "user", "content": "q"}]] * len(rows)
    rewards = trainer._calculate_rewards(inputs, prompts, completions, [[1]] * len(rows))
    ours, trls = rewards[:, 0].tolist(), rewards[:, 1].tolist()
    assert ours == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert trls == [1.0, 1.0, 1.0, 1.0, 1.0]  # docs/integrations.md: what TRL's own reward gives


def test_one_grpo_step_with_the_oreal_reward(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, [oreal_accuracy])
    result = trainer.train()
    assert result.global_step == 1
    key = "rewards/oreal_accuracy/mean"
    logged = [entry[key] for entry in trainer.state.log_history if key in entry]
    assert logged and 0.0 <= logged[0] <= 1.0
