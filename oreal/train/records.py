"""What a run writes about itself: the run directory, a step's metrics from its rows, the logged
samples (``samples.jsonl``, read by ``oreal inspect``), the progress bar and the summary.

Kept apart from :mod:`oreal.train.trainer` so that the trainer reads as the algorithm alone.
Metrics are computed from compact per-row summaries gathered from every rank, so they are the
step's global values under data parallelism.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from oreal.atomic import atomic_write_json
from oreal.batch import Rollout, StepBatch
from oreal.config_io import ConfigError, dump_config
from oreal.eval import EvalResult
from oreal.runtime import Runtime
from oreal.train.config import OrealConfig

__all__ = [
    "RunLock",
    "eval_line",
    "gather_step_records",
    "prepare_run_dir",
    "progress_bar",
    "row_summary",
    "sample_record",
    "step_metrics",
    "write_summary",
]


class RunLock:
    """An exclusive lock on a run directory for the life of a trainer (``RUN_DIR/.lock``).

    Two processes writing one run would interleave its logs and checkpoints; the second one is
    refused with the first one's pid. The lock is released when the process ends, whatever the
    way (the kernel drops ``flock`` locks with the file descriptor).
    """

    def __init__(self, run_dir: Path) -> None:
        import fcntl
        import os

        self.path = run_dir / ".lock"
        self._handle = self.path.open("a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "unknown"
            self._handle.close()
            raise ConfigError(
                f"{run_dir} is in use by another oreal process (pid {holder}); wait for it to "
                "end, or use another run_dir"
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def prepare_run_dir(config: OrealConfig, resume_dir: Path | None) -> Path:
    """The run directory: ``resume_dir``, else ``train.run_dir``, else ``runs/ALGO-TIME``.

    A new run refuses a directory that already holds one and writes its ``config.yaml``; a
    resumed run rewrites it, so that overrides given with ``--resume`` are on record.
    """
    if resume_dir is not None:
        dump_config(config.record(), Path(resume_dir) / "config.yaml")
        return Path(resume_dir)
    if config.train.run_dir:
        run_dir = Path(config.train.run_dir)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{config.algorithm.name}-{stamp}"
    if (run_dir / "metrics.jsonl").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; use --resume {run_dir} or another run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config.record(), run_dir / "config.yaml")
    return run_dir


def row_summary(row: Rollout) -> dict[str, Any]:
    """The numbers of one rollout that the step's metrics are computed from."""
    return {
        "correct": row.correct,
        "reward": row.reward,
        "terms": row.reward_terms,
        "tokens": row.num_tokens,
        "truncated": row.truncated,
        "keep": row.keep,
        "group": row.group,
    }


def step_metrics(rows: Sequence[dict[str, Any]], k: int) -> dict[str, float]:
    """Reward, per-term rewards, pass rate, group statistics and lengths of one step."""
    if not rows:
        return {}
    out: dict[str, float] = {
        "reward_mean": statistics.fmean(r["reward"] for r in rows),
        "response_length": statistics.fmean(r["tokens"] for r in rows),
        "truncation_rate": statistics.fmean(float(r["truncated"]) for r in rows),
        "sequences_kept": float(sum(r["keep"] for r in rows)),
    }
    terms: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        for name, value in r["terms"].items():
            if value is not None:
                terms[name].append(value)
    for name, values in terms.items():
        out[f"reward/{name}"] = statistics.fmean(values)
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    out["groups_kept"] = statistics.fmean(any(r["keep"] for r in g) for g in groups.values())
    if all(r["correct"] is not None for r in rows):
        out["pass_rate"] = statistics.fmean(float(r["correct"]) for r in rows)
        mixed = [0 < sum(r["correct"] for r in g) < len(g) for g in groups.values()]
        out["groups_mixed"] = statistics.fmean(mixed)
    return out


def sample_record(row: Rollout, tokenizer: Any) -> dict[str, Any]:
    """One rollout as a ``samples.jsonl`` record (tokens and, with a token RM, their weights)."""
    sample: dict[str, Any] = {
        "group": row.group,
        "sample": row.sample,
        "prompt": row.prompt,
        "response": row.text,
        "reward": row.reward,
        "reward_terms": row.reward_terms,
        "correct": row.correct,
        "truncated": row.truncated,
        "advantage": row.advantage,
        "kept": row.keep,
        "tokens": [tokenizer.decode([t]) for t in row.response_ids],
    }
    if row.verdict is not None:
        sample["extracted"] = row.verdict.extracted
        sample["reason"] = row.verdict.reason
    if row.token_weights is not None and row.token_q is not None:
        sample["positive"] = bool(row.correct)
        sample["token_weights"] = [round(w, 4) for w in row.token_weights.tolist()]
        sample["token_q"] = [round(q, 4) for q in row.token_q.tolist()]
    return sample


def sample_candidates(rows: Sequence[Rollout], k: int, count: int) -> list[Rollout]:
    """The rows a step logs: rows the token RM weighted first (``oreal inspect`` colours
    them), then one per group (sample g mod K of group g), at most ``count``."""
    weighted = [row for row in rows if row.token_weights is not None]
    spread = [row for row in rows if row.sample == row.group % k and row not in weighted]
    return (weighted + spread)[:count]


def gather_step_records(
    batch: StepBatch, runtime: Runtime, tokenizer: Any, *, k: int, samples: int
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The step's metrics over every rank's rows, and the samples to log (weighted rows
    first), from compact per-row summaries gathered to every rank."""
    local = [row_summary(row) for row in batch]
    picked = [sample_record(row, tokenizer) for row in sample_candidates(batch.rows, k, samples)]
    gathered = runtime.all_gather_object((local, picked))
    rows = [summary for part in gathered for summary in part[0]]
    candidates = [sample for part in gathered for sample in part[1]]
    weighted = [s for s in candidates if "token_weights" in s]
    chosen = (weighted + [s for s in candidates if s not in weighted])[:samples]
    return step_metrics(rows, k), chosen


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def eval_line(label: str, result: EvalResult) -> str:
    correct = round(result.accuracy * result.num_problems)
    return f"eval {label}: {correct}/{result.num_problems} = {result.accuracy:.1%} (greedy pass@1)"


def write_summary(
    run_dir: Path,
    records: Sequence[dict[str, Any]],
    *,
    steps: int,
    seconds: float,
    eval_problems: int,
    console: Console,
) -> dict[str, Any]:
    """``summary.json`` from the logged records (first and last held-out accuracy), printed."""
    evals = [r["eval_accuracy"] for r in records if "eval_accuracy" in r]
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "steps": steps,
        "wall_seconds": round(seconds, 1),
        "eval_problems": eval_problems,
        "eval_accuracy_before": evals[0] if evals else None,
        "eval_accuracy_after": evals[-1] if evals else None,
    }
    atomic_write_json(run_dir / "summary.json", summary)
    if evals:
        gain = evals[-1] - evals[0]
        sign = "+" if gain >= 0 else ""
        console.print(
            f"eval accuracy {evals[0]:.1%} -> {evals[-1]:.1%} ({sign}{gain * 100:.1f} points) "
            f"in {seconds / 60:.1f} min; run: {run_dir}",
            soft_wrap=True,
        )
    else:
        console.print(f"trained {steps} steps in {seconds / 60:.1f} min; run: {run_dir}")
    return summary
