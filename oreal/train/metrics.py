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

from oreal.config_io import ConfigError

PLOTTED_METRICS = (
    "reward_mean",
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


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the records of steps after ``last_step`` (they belong to a lost future)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


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
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


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
