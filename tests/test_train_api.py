"""The Python API (TRL-shaped), user-written algorithms and reward terms, end to end."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from oreal.cli import app
from oreal.config_io import ConfigError, load_config
from oreal.models import load_policy
from oreal.rewards import RewardError
from oreal.train import OrealConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TinyConfig = Callable[..., OrealConfig]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_documented_python_example_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    """examples/python_api.py (docs/python_api.md): a model object, a plain function and a
    list of dicts, with no file on disk; the tiny model stands in for the embedded one."""
    env = {**os.environ, "OREAL_EXAMPLE_MODEL": str(tiny_model_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = ast.literal_eval(done.stdout.strip().splitlines()[-1])  # the printed summary
    assert summary["steps"] == 3 and summary["eval_problems"] == 16
    logged = metrics(tmp_path / summary["run_dir"])
    assert all("reward/verifier" in r and "reward/brevity" in r for r in logged[1:])


def test_objects_in_a_notebook(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_policy(tiny_model_dir)
    rows = [{"question": f"q{i}", "answer": str(i), "level": i % 3} for i in range(8)]
    seen: dict[str, list] = {}

    def spy(completions: list[str], level: list[int], step: int) -> list[float]:
        seen.setdefault("level", []).extend(level)  # a dataset column, by name
        seen.setdefault("step", []).append(step)
        return [float(len(c) % 2) for c in completions]

    args = OrealConfig(
        model={"device": "cpu", "bf16_autocast": False},
        algorithm={"name": "rloo"},
        rollout={"prompts_per_step": 2, "num_rollouts": 2, "max_new_tokens": 4},
        data={"eval": None},
        train={"steps": 2, "run_dir": str(tmp_path / "run"), "plot": False},
    )
    trainer = Trainer(model, spy, rows, None, args, tokenizer)
    assert trainer.policy is model  # the object itself trains
    trainer.train()
    assert seen["step"] == [0, 1] and set(seen["level"]) <= {0, 1, 2}
    assert "reward/spy" in metrics(tmp_path / "run")[0]


def test_a_datasets_dataset_works(tiny_config: TinyConfig, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_list([{"question": f"{i} + 1", "answer": str(i + 1)}
                                        for i in range(6)])  # fmt: skip
    trainer = Trainer(args=tiny_config(tmp_path / "run", "train.steps=1"), train_dataset=table)
    assert [p.question for p in trainer.train_problems][:2] == ["0 + 1", "1 + 1"]


def test_a_user_algorithm_trains_from_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            f"model.name_or_path={tiny_model_dir}",
            "model.bf16_autocast=false",
            "model.device=cpu",
            "data.train=synthetic:arithmetic?n=16&seed=0",
            "data.eval=null",
            "rollout.prompts_per_step=2",
            "rollout.num_rollouts=4",
            "rollout.max_new_tokens=4",
            "train.steps=1",
            "train.plot=false",
            "algorithm.name=median_grpo",
            f"algorithm.plugins=[{EXAMPLES / 'median_grpo.py'}]",
            "algorithm.params.scale=2",
            "--run-dir",
            str(run_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    recorded = (run_dir / "config.yaml").read_text()
    assert "median_grpo" in recorded and "scale: 2.0" in recorded
    assert metrics(run_dir)[-1]["step"] == 1


def test_the_user_estimator_computes_the_advantages(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    plugin = f"algorithm.plugins=[{EXAMPLES / 'median_grpo.py'}]"
    config = tiny_config(
        tmp_path / "run", "algorithm.name=median_grpo", plugin, "algorithm.params.scale=3",
        "rollout.num_rollouts=3", reward="has_digit",
    )  # fmt: skip
    trainer = Trainer(args=config)
    trainer.train_step()
    assert trainer.last_batch is not None
    for group in {row.group for row in trainer.last_batch}:
        rows = [row for row in trainer.last_batch if row.group == group]
        median = float(torch.tensor([row.reward for row in rows]).median())
        assert [row.advantage for row in rows] == pytest.approx(
            [3 * (row.reward - median) for row in rows]
        )


def test_two_reward_terms_are_weighted_and_logged(tiny_config: TinyConfig, tmp_path: Path) -> None:
    conftest = ROOT / "tests" / "conftest.py"
    terms = (
        f"reward.functions=[{conftest}:has_digit, "
        f"{{function: {EXAMPLES / 'length_penalty.py'}:length_penalty, weight: 2, name: length}}]"
    )
    config = tiny_config(tmp_path / "run", "algorithm.name=grpo", "train.steps=2", terms)
    Trainer(args=config).train()
    for record in metrics(tmp_path / "run"):
        expected = record["reward/has_digit"] + 2 * record["reward/length"]
        assert record["reward_mean"] == pytest.approx(expected)
        assert record["reward/length"] < 0


def test_binary_methods_refuse_terms_they_would_ignore(tiny_config: TinyConfig) -> None:
    penalty = f"{{function: {EXAMPLES / 'length_penalty.py'}:length_penalty, weight: 1}}"
    with pytest.raises(ConfigError, match="would not change training"):
        load_config(OrealConfig, None, [f"reward.functions=[verifier, {penalty}]"])
    logged_only = penalty.replace("weight: 1", "weight: 0")
    assert load_config(OrealConfig, None, [f"reward.functions=[verifier, {logged_only}]"])


def partial_credit(completions: list[str], **kwargs: object) -> list[float]:
    return [0.5 if "1" in c else 0.0 for c in completions]


def test_a_binary_method_with_partial_credit_says_so(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path / "run", "rollout.max_new_tokens=12")
    trainer = Trainer(args=config, reward_funcs=[partial_credit])
    with pytest.raises(RewardError, match=r"learns from correct/incorrect only.*0\.5"):
        for _ in range(4):  # until a completion earns the partial credit
            trainer.train_step()


def abstain_on_odd(completions: list[str], problem_id: list[str], **kwargs: object) -> list:
    return [None if int(pid.rsplit("/", 1)[-1]) % 2 else 1.0 for pid in problem_id]


def never(completions: list[str], **kwargs: object) -> list:
    return [None] * len(completions)


def test_terms_may_abstain_but_not_all_of_them(tiny_config: TinyConfig, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "a", "algorithm.name=grpo")
    trainer = Trainer(
        args=config, reward_funcs=[abstain_on_odd, f"{ROOT / 'tests/conftest.py'}:has_digit"]
    )
    record = trainer.train_step()
    assert record["reward/abstain_on_odd"] == 1.0  # the mean over the rows it scored
    assert trainer.last_batch is not None
    assert any(row.reward_terms["abstain_on_odd"] is None for row in trainer.last_batch)
    lonely = Trainer(args=tiny_config(tmp_path / "b", "algorithm.name=grpo"), reward_funcs=[never])
    with pytest.raises(RewardError, match="every reward term abstained"):
        lonely.train_step()


def test_overlong_penalty_follows_dapo_soft_punishment() -> None:
    """DAPO Eq. 13 with L_max 48 and L_cache 16, by hand: 0 up to 32 tokens, then linear down to
    -1 at 48, and -1 for a response cut at the budget whatever its length."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from length_penalty import overlong_penalty
    finally:
        sys.path.remove(str(EXAMPLES))
    lengths = [0, 32, 33, 40, 48, 10]
    truncated = [False, False, False, False, False, True]
    penalties = overlong_penalty([[7] * n for n in lengths], truncated)
    assert penalties == pytest.approx([0.0, 0.0, -1 / 16, -0.5, -1.0, -1.0])
