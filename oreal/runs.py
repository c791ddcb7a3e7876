"""The layout of an ``oreal train`` run directory, known in one place.

    RUN_DIR/
      config.yaml                 the resolved config (every algorithm default filled in)
      metrics.jsonl, samples.jsonl, summary.json, curves.png, tensorboard/
      checkpoints/step-000010/    see oreal.train.checkpoint (trainer_state.json marks a
                                  complete checkpoint; a step-N.tmp folder is never one)

Training, evaluation (``oreal eval RUN_DIR``), search and ``load_token_rm`` find checkpoints
with these functions, and :func:`resolve_model` turns what a user typed as a model (a name, a
path, a run, a checkpoint) into what to load, before anything loads.
"""

from __future__ import annotations

import re
from pathlib import Path

from oreal.errors import UserError

__all__ = [
    "CHECKPOINT_PATTERN",
    "ModelPathError",
    "checkpoint_dir",
    "latest_checkpoint",
    "list_checkpoints",
    "resolve_model",
]


class ModelPathError(UserError):
    """A model name or path that names nothing loadable."""


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


def resolve_model(model: str) -> tuple[str, Path | None]:
    """The path or id to load for MODEL, and the ``oreal train`` run directory if it is one.

    A run directory (has ``checkpoints/``) gives its latest ``step-NNNNNN/policy``; a checkpoint
    directory gives its ``policy``; a directory with ``config.json`` is used as is. Anything that
    looks like a path (absolute, ``./``, ``~``, or an existing file) must exist. Other names
    (``embedded``, hub ids) are left to :func:`oreal.models.load_policy`.
    """
    from oreal.models import EMBEDDED_ALIASES

    path = Path(model).expanduser()
    if not path.exists():
        if model.strip().lower() in EMBEDDED_ALIASES:
            return model, None
        if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
            raise ModelPathError(f"model path not found: {model}")
        return model, None
    if path.is_file():
        if path.suffix == ".gguf":
            return str(path), None
        raise ModelPathError(f"{model} is a file; expected a model directory, .gguf or hub id")
    if (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path)
        if latest is None or not (latest / "policy" / "config.json").is_file():
            raise ModelPathError(f"run directory {model} has no checkpoints/step-*/policy yet")
        return str(latest / "policy"), path
    if checkpoint_step(path) is not None and (path / "policy" / "config.json").is_file():
        run = path.parent.parent
        return str(path / "policy"), run if (run / "config.yaml").is_file() else None
    if (path / "config.json").is_file():
        return str(path), None
    raise ModelPathError(
        f"{model} is neither a model directory (config.json), a checkpoint (step-*/policy) nor "
        "an oreal train run directory (checkpoints/)"
    )
