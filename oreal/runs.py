"""The layout of an ``oreal train`` run directory, known in one place.

    RUN_DIR/
      config.yaml                 the resolved config (every algorithm default filled in)
      metrics.jsonl, samples.jsonl, summary.json, curves.png, tensorboard/
      checkpoints/step-000010/    see oreal.train.checkpoint (trainer_state.json marks a
                                  complete checkpoint; a step-N.tmp folder is never one)

Training, evaluation (``oreal eval RUN_DIR``), search and ``load_token_rm`` find checkpoints
with these functions.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CHECKPOINT_PATTERN", "checkpoint_dir", "latest_checkpoint", "list_checkpoints"]

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
COMPLETE_MARKER = "trainer_state.json"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a ``.tmp`` staging folder never counts)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        (step, path)
        for path in folder.iterdir()
        if path.is_dir()
        and (step := checkpoint_step(path)) is not None
        and (path / COMPLETE_MARKER).is_file()
    ]
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None
