"""Where a run's numbers go: ``metrics.jsonl``, ``samples.jsonl``, TensorBoard, W&B, a PNG.

``metrics.jsonl`` is the record of truth (one JSON object per step, flushed at once so a crash
loses nothing); the other sinks mirror it. On resume the files are truncated back to the
checkpoint's step so that a resumed run's records read like an uninterrupted one's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oreal.atomic import atomic_write_text
from oreal.config_io import ConfigError

PLOTTED_METRICS = (
    "reward_mean",
    "pass_rate",
    "eval_accuracy",
    "response_length",
    "kl",
    "entropy",
    "loss",
    "grad_norm",
    "groups_kept",
    "rm_loss",
    "rm_auc",
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a torn last line (a kill mid-write) is skipped."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):
                break
            raise ValueError(f"{path}, line {number}: not valid JSON") from None
    return records


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the records of steps after ``last_step`` (they belong to a lost future); the file
    is replaced atomically, so a kill meanwhile leaves the old one."""
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


class MetricsWriter:
    def __init__(
        self,
        run_dir: Path,
        loggers: Sequence[str] = (),
        resume_step: int | None = None,
        config: dict[str, Any] | None = None,
    ):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.samples_path = run_dir / "samples.jsonl"
        if resume_step is not None:
            _truncate_jsonl(self.metrics_path, resume_step)
            _truncate_jsonl(self.samples_path, resume_step)
        self._tensorboard = None
        self._wandb_run = None
        if "tensorboard" in loggers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ConfigError(
                    "train.loggers has 'tensorboard' but it is not installed: "
                    "pip install 'oreal[tensorboard]'"
                ) from error
            self._tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if "wandb" in loggers:
            try:
                import wandb
            except ImportError as error:
                raise ConfigError(
                    "train.loggers has 'wandb' but it is not installed: pip install 'oreal[wandb]'"
                ) from error
            self._wandb_run = wandb.init(
                project="oreal", dir=str(run_dir), config=config, resume="allow"
            )

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **metrics}
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, step)
            self._tensorboard.flush()
        if self._wandb_run is not None:
            self._wandb_run.log(metrics, step=step)

    def log_samples(self, step: int, samples: Sequence[dict[str, Any]]) -> None:
        with self.samples_path.open("a", encoding="utf-8") as handle:
            for sample in samples:
                handle.write(json.dumps({"step": step, **sample}) + "\n")

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(run_dir / "metrics.jsonl")


def plot_curves(run_dir: Path, output: Path | None = None) -> Path | None:
    """One PNG with a panel per metric that the run logged; None when there is nothing to plot."""
    records = read_metrics(run_dir)
    names = [name for name in PLOTTED_METRICS if any(name in record for record in records)]
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        points = [(r["step"], r[name]) for r in records if r.get(name) is not None]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.suptitle(run_dir.name)
    figure.tight_layout()
    output = output or run_dir / "curves.png"
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
