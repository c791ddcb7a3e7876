"""``load_token_rm``: the RM of a run directory scores exactly as the trainer's RM did."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from oreal.batch import pad_rollouts
from oreal.token_rm.load import load_token_rm
from oreal.train import Trainer
from oreal.train.config import OrealConfig

TinyConfig = Callable[..., OrealConfig]


def test_a_run_directory_gives_back_the_trained_rm(
    tiny_rm_config: TinyConfig, tmp_path: Path
) -> None:
    trainer = Trainer(args=tiny_rm_config(tmp_path / "run", "train.steps=3"))
    trainer.train()
    assert trainer.token_rm is not None
    loaded = load_token_rm(tmp_path / "run")
    assert loaded.step == 3 and loaded.score_position == trainer.config.token_rm.score_position
    tensors = pad_rollouts([([1, 2, 3], [4, 5, 6, 7]), ([8, 9], [10])], pad_token_id=0)
    args = (tensors.input_ids, tensors.attention_mask, tensors.response_mask)
    trainer.token_rm.model.eval()
    with torch.no_grad():
        expected = trainer.token_rm.model(*args, score_position=loaded.score_position)
        got = loaded.model(*args, score_position=loaded.score_position)
    assert expected.abs().sum() > 0  # trained: the head is no longer zero
    torch.testing.assert_close(got, expected)
    assert load_token_rm(loaded.checkpoint).step == 3


def test_paths_without_an_rm_fail_clearly(tiny_config: TinyConfig, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither"):
        load_token_rm(tmp_path)
    Trainer(args=tiny_config(tmp_path / "plain", "train.steps=1")).train()
    with pytest.raises(ValueError, match="trained no token RM"):
        load_token_rm(tmp_path / "plain")
