"""Checkpoints that resume exactly: weights, optimizer, scheduler, RNG states, step, data order.

Layout of ``RUN_DIR/checkpoints/step-000010/``::

    policy/            save_pretrained() output: loads back with transformers as it is
    trainer_state.pt   optimizer + scheduler state dicts, RNG states, step, data position
    extra/<name>.pt    other trained modules' tensors (OREAL's token reward model); their
                       optimizer and scheduler states live in trainer_state.pt under ``extra``

A checkpoint is written into a temporary folder and renamed into place, so an interrupted save
never leaves a half-written checkpoint that ``--resume`` would pick up.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    """Everything besides the weights that a resumed run needs to continue bit-for-bit."""

    step: int
    data_position: int
    data_epoch: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:06d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer: Any,
    state: TrainerState,
    extra_modules: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` atomically and return its folder.

    ``extra_modules`` maps a name to a module (its ``state_dict()`` is saved) or directly to a
    dict of tensors (e.g. only the trainable part of a module that shares frozen weights).
    """
    final = checkpoint_dir(run_dir, step)
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging / "policy", safe_serialization=True)
    tokenizer.save_pretrained(staging / "policy")
    for name, module in (extra_modules or {}).items():
        (staging / "extra").mkdir(exist_ok=True)
        tensors = module.state_dict() if isinstance(module, torch.nn.Module) else dict(module)
        torch.save(tensors, staging / "extra" / f"{name}.pt")
    torch.save(state.__dict__, staging / "trainer_state.pt")
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    steps = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))
    ]
    return max(steps)[1] if steps else None


def load_trainer_state(checkpoint: Path) -> TrainerState:
    # weights_only=False: the file holds numpy RNG state and plain Python objects that we wrote.
    raw = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
    return TrainerState(**raw)


def load_extra_state(checkpoint: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors saved under ``extra_modules[name]`` (on the CPU)."""
    return torch.load(checkpoint / "extra" / f"{name}.pt", map_location="cpu", weights_only=True)


def load_extra_module(checkpoint: Path, name: str, module: torch.nn.Module) -> None:
    module.load_state_dict(load_extra_state(checkpoint, name))
