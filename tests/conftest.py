"""Shared test settings and the tiny-trainer fixtures.

One torch thread: the tests run tiny models, where OpenMP synchronisation costs more than it
gains, and on a 2-core CI machine the verifier's worker processes need the other core.

The tests share the tiny tokenizer; the trainer tests share one tiny random model (built
offline, once per session) and one base configuration; the reward functions live here so that
configs can name them as ``tests/conftest.py:function``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from oreal.config_io import load_config
from oreal.models import save_tiny
from oreal.models.tiny import build_tiny_tokenizer
from oreal.train.config import OrealConfig

torch.set_num_threads(1)

THIS_FILE = Path(__file__).resolve()
TinyConfig = Callable[..., OrealConfig]


def contains_seven(completions: Sequence[str], **kwargs: object) -> list[float]:
    """A trivial reward a random tiny model can learn in seconds: say '7' somewhere."""
    return [1.0 if "7" in completion else 0.0 for completion in completions]


def has_digit(completions: Sequence[str], **kwargs: object) -> list[float]:
    """About half of a random tiny model's 8-token responses contain a digit: mixed groups."""
    return [1.0 if any(c.isdigit() for c in completion) else 0.0 for completion in completions]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerBase:
    """The tiny offline tokenizer (character-level, ChatML special tokens) of the tiny models."""
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: Path) -> TinyConfig:
    """``tiny_config(run_dir, *overrides, reward="contains_seven")``: a seconds-long CPU run."""

    def make(run_dir: Path, *overrides: str, reward: str = "contains_seven") -> OrealConfig:
        return load_config(
            OrealConfig,
            None,
            [
                f"model.name_or_path={tiny_model_dir}",
                "model.bf16_autocast=false",
                "model.device=cpu",
                "data.train=synthetic:arithmetic?n=32&seed=0",
                "data.eval=null",
                "rollout.prompts_per_step=2",
                "rollout.num_rollouts=4",
                "rollout.max_new_tokens=6",
                f"reward.functions=[{THIS_FILE}:{reward}]",
                "train.micro_batch_size=3",
                "train.plot=false",
                "train.samples_per_step=2",
                f"train.run_dir={run_dir}",
                *overrides,
            ],
        )

    return make


@pytest.fixture(scope="session")
def tiny_rm_config(tiny_config: TinyConfig) -> TinyConfig:
    """``tiny_config`` with the token RM on, 2 RM-only steps, and a reward with mixed groups."""

    def make(run_dir: Path, *overrides: str) -> OrealConfig:
        return tiny_config(
            run_dir,
            "rollout.max_new_tokens=8",
            "optim.lr=1e-3",
            "token_rm.enabled=true",
            "token_rm.lr=1e-2",
            "token_rm.warmup_steps=0",
            "token_rm.policy_freeze_steps=2",
            "train.samples_per_step=4",
            *overrides,
            reward="has_digit",
        )

    return make
