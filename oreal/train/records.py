"""What a run writes about itself: the run directory, per-step rollout metrics, the logged
samples (``samples.jsonl``, read by ``oreal inspect``), the progress bar and the summary.

Kept apart from :mod:`oreal.train.loop` so that the loop reads as the algorithm alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from oreal.algorithms import AdvantageResult
from oreal.config_io import dump_config
from oreal.eval import EvalResult
from oreal.rollout import RolloutBatch
from oreal.token_rm import TokenRMOutput
from oreal.train.config import OrealConfig


def prepare_run_dir(config: OrealConfig, resume_dir: Path | None) -> Path:
    """The run directory: ``resume_dir``, else ``train.run_dir``, else ``runs/ALGO-TIME``.

    A new run refuses a directory that already holds one and writes its ``config.yaml``.
    """
    if resume_dir is not None:
        return Path(resume_dir)
    if config.train.run_dir:
        run_dir = Path(config.train.run_dir)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{config.algorithm.name}-{stamp}"
    if (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; use --resume {run_dir} or another run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config.record(), run_dir / "config.yaml")
    return run_dir


def rollout_metrics(
    rollouts: RolloutBatch, scores: torch.Tensor, keep: torch.Tensor
) -> dict[str, float]:
    """Reward, pass rate, group statistics and lengths of one step's rollouts."""
    k = rollouts.k
    correct = scores.view(-1, k) > 0.5
    per_group = correct.sum(dim=1)
    lengths = torch.tensor([len(o.response_ids) for o in rollouts], dtype=torch.float32)
    return {
        "reward_mean": float(scores.mean()),
        "pass_rate": float(correct.float().mean()),
        "groups_mixed": float(((per_group > 0) & (per_group < k)).float().mean()),
        "groups_kept": float(keep.view(-1, k).any(dim=1).float().mean()),
        "sequences_kept": float(keep.sum()),
        "response_length": float(lengths.mean()),
        "truncation_rate": float(sum(o.truncated for o in rollouts) / len(rollouts)),
    }


def sample_records(
    rollouts: RolloutBatch,
    scores: Sequence[float],
    result: AdvantageResult,
    kept: torch.Tensor,
    rm_output: TokenRMOutput | None,
    *,
    tokenizer: Any,
    verdicts: Sequence[Any] | None,
    count: int,
) -> list[dict[str, Any]]:
    """Up to ``count`` rollouts of a step as ``samples.jsonl`` records.

    One sample per group (sample i of group i mod K), so a batch shows several prompts; with
    a token RM the trained rows come first, since they carry the weights ``oreal inspect``
    colours.
    """
    picks = [g * rollouts.k + g % rollouts.k for g in range(rollouts.num_prompts)]
    rm_rows = {int(i): row for row, i in enumerate(kept)} if rm_output is not None else {}
    if rm_rows:
        picks = list(rm_rows) + [i for i in picks if i not in rm_rows]
    samples = []
    for i in picks[:count]:
        output = rollouts.outputs[i]
        sample: dict[str, Any] = {
            "prompt": output.prompt,
            "response": output.text,
            "reward": scores[i],
            "truncated": output.truncated,
            "advantage": float(result.advantages[i]),
            "kept": bool(result.keep[i]),
            "tokens": [tokenizer.decode([t]) for t in output.response_ids],
        }
        if verdicts:
            sample["extracted"] = verdicts[i].extracted
            sample["reason"] = verdicts[i].reason
        if i in rm_rows and rm_output is not None:
            sample["positive"] = bool(result.positive[i])
            sample.update(rm_output.sample_fields(rm_rows[i], len(output.response_ids)))
        samples.append(sample)
    return samples


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
    run_dir: Path, *, steps: int, seconds: float, eval_problems: int, console: Console
) -> dict[str, Any]:
    """``summary.json`` from ``metrics.jsonl`` (first and last held-out accuracy), printed too."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    evals = [r["eval_accuracy"] for r in records if "eval_accuracy" in r]
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "steps": steps,
        "wall_seconds": round(seconds, 1),
        "eval_problems": eval_problems,
        "eval_accuracy_before": evals[0] if evals else None,
        "eval_accuracy_after": evals[-1] if evals else None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if evals:
        gain = evals[-1] - evals[0]
        sign = "+" if gain >= 0 else ""
        console.print(
            f"eval accuracy {evals[0]:.1%} -> {evals[-1]:.1%} ({sign}{gain * 100:.1f} points) "
            f"in {seconds / 60:.1f} min; run: {run_dir}"
        )
    return summary
