"""Load the token RM that an ``oreal train`` run trained, for scoring outside training.

``load_token_rm(RUN_DIR)`` (its latest checkpoint) or ``load_token_rm(RUN_DIR/checkpoints/step-N)``
rebuilds the RM exactly as the run had it at that step: the backbone the run started from (its
``model.name_or_path``, or ``token_rm.name_or_path``), the zero head, then the trained tensors of
the checkpoint. It also returns the settings that say how the run read the RM (score position,
weight source), so that a scorer reads it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from oreal.token_rm.model import LoraSettings, ScorePosition, TokenRewardModel, build_token_rm
from oreal.token_rm.weights import WeightSource

__all__ = ["LoadedTokenRM", "load_token_rm"]


@dataclass
class LoadedTokenRM:
    """A trained token RM, its tokenizer (the policy's), and how its run read it."""

    model: TokenRewardModel
    tokenizer: PreTrainedTokenizerBase
    score_position: ScorePosition
    weight_source: WeightSource
    checkpoint: Path
    step: int


def _checkpoint_of(path: Path) -> Path:
    from oreal.runs import latest_checkpoint

    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"run directory {path} has no checkpoint yet")
        return found
    if (path / "trainer_state.json").is_file():
        return path
    raise FileNotFoundError(
        f"{path} is neither an oreal train run directory (checkpoints/) nor a checkpoint"
    )


def load_token_rm(path: str | Path, *, device: str | torch.device | None = None) -> LoadedTokenRM:
    """The token RM of a run directory (latest checkpoint) or of one checkpoint directory.

    Raises ``FileNotFoundError`` for a path that holds no checkpoint and ``ValueError`` for a
    run that trained no token RM.
    """
    import yaml
    from safetensors.torch import load_file

    from oreal.models import load_policy
    from oreal.train.config import ModelConfig, TokenRMConfig

    checkpoint = _checkpoint_of(Path(path).expanduser())
    run_dir = checkpoint.parent.parent
    # Only the two sections needed, validated on their own: reading a run this way imports
    # none of the code its config may name (reward functions, algorithm plug-ins).
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    model_config = ModelConfig.model_validate(recorded.get("model", {}))
    rm = TokenRMConfig.model_validate(recorded.get("token_rm", {}))
    if not rm.enabled:
        raise ValueError(f"the run in {run_dir} trained no token RM (token_rm.enabled: false)")
    state_file = checkpoint / "token_rm.safetensors"
    if not state_file.is_file():
        raise FileNotFoundError(f"{checkpoint} has no token RM state ({state_file.name})")
    policy, tokenizer = load_policy(
        model_config.name_or_path, device="cpu", cache_dir=model_config.cache_dir
    )
    model = build_token_rm(
        policy,
        backbone=rm.backbone,
        name_or_path=rm.name_or_path,
        tokenizer=tokenizer,
        lora=LoraSettings(
            rank=rm.lora_rank,
            alpha=rm.lora_alpha,
            dropout=rm.lora_dropout,
            target_modules=rm.lora_target_modules,
        ),
        device="cpu",
        cache_dir=model_config.cache_dir,
    )
    del policy
    model.load_trainable_state_dict(load_file(str(state_file)))
    model.eval()
    if device is not None:
        model.to(device)
    step = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint.name.startswith("step-") else 0
    return LoadedTokenRM(
        model=model,
        tokenizer=tokenizer,
        score_position=rm.score_position,
        weight_source=rm.weight_source,
        checkpoint=checkpoint,
        step=step,
    )
