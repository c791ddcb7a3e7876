"""The cadence around the steps: evaluation, checkpoints, logging. One callback each.

A callback sees the trainer at three points: ``on_train_begin``, ``on_step_end`` (with the
step's metrics record, which it may add to: the evaluation adds ``eval_accuracy`` before the
logger writes the record) and ``on_train_end`` (which may return summary fields). Scripts that
need another cadence (``benchmarks/ablation_token_rm.py``) add a callback instead of
re-implementing the loop: ``Trainer(..., callbacks=[MyCallback()])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oreal.train.metrics import MetricsWriter, plot_curves, read_metrics
from oreal.train.records import eval_line, progress_bar, write_summary

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from oreal.train.trainer import Trainer

__all__ = [
    "Callback",
    "CheckpointCallback",
    "EvalCallback",
    "LoggingCallback",
    "with_defaults",
]


class Callback:
    """Hooks called by :meth:`oreal.train.Trainer.train` (all no-ops here)."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first remaining step."""

    def on_step_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        """After each step; ``trainer.step`` is the number of steps done."""

    def on_train_end(self, trainer: Trainer, seconds: float) -> dict[str, Any] | None:
        """After the last step; may return fields of the run summary."""
        return None


class EvalCallback(Callback):
    """Greedy pass@1 before training, every ``train.eval_every`` steps and after the last."""

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.step == 0 and trainer.eval_problems:
            result = trainer.evaluate()
            if result is not None:
                trainer.console.print(eval_line("before training", result))
            self.before = None if result is None else result.accuracy

    def on_step_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if not trainer.eval_problems:
            return
        every = trainer.config.train.eval_every
        last = trainer.step == trainer.config.train.steps
        if last or (every and trainer.step % every == 0):
            result = trainer.evaluate()
            if result is not None:
                record["eval_accuracy"] = result.accuracy


class CheckpointCallback(Callback):
    """A checkpoint every ``train.checkpoint_every`` steps and after the last."""

    def on_step_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        every = trainer.config.train.checkpoint_every
        if trainer.step == trainer.config.train.steps or (every and trainer.step % every == 0):
            trainer.save()


class LoggingCallback(Callback):
    """``metrics.jsonl``, ``samples.jsonl``, TensorBoard / W&B, the progress bar, the
    summary and ``curves.png`` (main rank only)."""

    def __init__(self) -> None:
        self.writer: MetricsWriter | None = None
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.logged_step: int | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if not trainer.runtime.is_main:
            return
        config = trainer.config
        self.writer = MetricsWriter(
            trainer.run_dir,
            config.train.loggers,
            # a resumed run's logs are cut back to its checkpoint; a restarted one's emptied
            resume_step=(-1 if trainer.restarted else trainer.step)
            if trainer.resume_dir is not None
            else None,
            config=config.record(),
        )
        before = getattr(_find(trainer, EvalCallback), "before", None)
        if before is not None and trainer.step == 0:
            self.writer.log_step(0, {"eval_accuracy": before})
        self.progress = progress_bar(trainer.console)
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=config.train.steps, completed=trainer.step, status=""
        )

    def on_step_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        if self.writer is None or self.progress is None or self.task is None:
            return
        self.flush(trainer, record)
        status = f"reward {record.get('reward_mean', 0.0):.3f}"
        if "eval_accuracy" in record:
            status += f"  eval {record['eval_accuracy']:.3f}"
        self.progress.update(self.task, advance=1, status=status)

    def flush(self, trainer: Trainer, record: dict[str, float]) -> None:
        """Write the step's record and samples, once (also when a run stops after its step)."""
        if self.writer is None or self.logged_step == trainer.step:
            return
        self.logged_step = trainer.step
        self.writer.log_step(trainer.step, record)
        if trainer.config.train.samples_per_step and trainer.last_samples:
            self.writer.log_samples(trainer.step, trainer.last_samples)

    def on_train_end(self, trainer: Trainer, seconds: float) -> dict[str, Any] | None:
        if self.writer is None:
            return None
        self.stop()
        self.writer.close()
        summary = write_summary(
            trainer.run_dir,
            read_metrics(trainer.run_dir),
            steps=trainer.step,
            seconds=seconds,
            eval_problems=len(trainer.eval_problems),
            console=trainer.console,
        )
        if trainer.config.train.plot:
            plot_curves(trainer.run_dir)
        return summary

    def stop(self) -> None:
        """Stop the progress bar (also when a run ends with an error)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _find(trainer: Trainer, kind: type) -> Any:
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)


def with_defaults(user: Sequence[Callback]) -> list[Callback]:
    """The evaluation first (it adds ``eval_accuracy`` to the record), then the user's (which
    may add to the record too), then the checkpoint and the logger that writes the record."""
    return [EvalCallback(), *user, CheckpointCallback(), LoggingCallback()]
