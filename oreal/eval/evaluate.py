"""Evaluate a generator on a list of problems: generate, verify, score (the library API).

:func:`evaluate_problems` is what both ``oreal eval`` and the trainer's periodic evaluation call.
Problems are rendered with the same :mod:`oreal.data.templates` the trainer uses, sorted by
prompt length and cut into fixed chunks (little padding, and a chunk's composition, hence its
seed and its numerics, does not depend on what was already done, so a resumed evaluation
reproduces an uninterrupted one). Verification of chunk ``i`` runs in a helper thread, whose
work happens in the verifier's worker processes, while chunk ``i + 1`` is generated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from oreal.data import Problem, render_prompt
from oreal.eval.scoring import EvalResult, SampleRecord, summarize

if TYPE_CHECKING:  # torch-heavy; the CLI's --help and the metrics need none of it
    from oreal.rollout import Generator, SamplingParams

__all__ = ["EvalResult", "evaluate_problems", "sampling_settings"]


def sampling_settings(sampling: SamplingParams, n: int) -> dict[str, Any]:
    """The numbers that must accompany every score: n, temperature, top_p, top_k, max tokens."""
    return {
        "n": n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_new_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
        "stop": list(sampling.stop),
    }


def evaluate_problems(
    generator: Generator,
    problems: list[Problem],
    *,
    template: str,
    sampling: SamplingParams,
    verifier: Any = None,
    n: int = 1,
    ks: Sequence[int] = (1,),
    batch_size: int = 64,
    on_samples: Callable[[list[SampleRecord]], None] | None = None,
    progress: bool = False,
    previous: Iterable[SampleRecord] = (),
    label: str = "eval",
) -> EvalResult:
    """Generate ``n`` samples per problem, verify them, and compute every metric.

    ``verifier`` is an :class:`oreal.verify.Verifier` (``verify_batch``, ``equivalent_batch``);
    with ``None`` a strict one is created for this call and closed after it (the trainer passes
    ``None`` when its reward is a user function rather than the verifier).
    Each chunk of at most ``batch_size`` sequences (``batch_size // n`` problems) is passed to
    ``on_samples`` as a list of per-sample records (``problem_id``, ``sample``, ``prompt``,
    ``response``, ``gold``, ``extracted``, ``correct``, ``reason``, ``response_tokens``,
    ``truncated``, ``finish_reason``) as soon as it is verified: the CLI appends them to
    ``generations.jsonl``. ``previous`` takes such records from an interrupted run; those
    (problem, sample) pairs are not generated again but count in the scores. With
    ``sampling.seed`` set, chunk ``j`` is sampled with seed ``seed + j``.
    """
    if verifier is None:
        from oreal.verify import Verifier

        with Verifier(mode="strict") as owned:
            return evaluate_problems(
                generator,
                problems,
                template=template,
                sampling=sampling,
                verifier=owned,
                n=n,
                ks=ks,
                batch_size=batch_size,
                on_samples=on_samples,
                progress=progress,
                previous=previous,
                label=label,
            )
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = sorted(set(ks))
    if not ks or ks[0] < 1 or ks[-1] > n:
        raise ValueError(f"every k must be in [1, n={n}], got {ks}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = [problem.id for problem in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("problem ids must be unique")
    start = time.perf_counter()
    known = {problem.id for problem in problems}
    records: dict[tuple[str, int], SampleRecord] = {}
    for record in previous:
        key = (record["problem_id"], int(record["sample"]))
        if key[0] in known and key[1] < n:
            records.setdefault(key, record)

    prompts = [render_prompt(problem, generator.tokenizer, template) for problem in problems]
    lengths = [len(row) for row in generator.tokenizer(prompts, add_special_tokens=False).input_ids]
    order = sorted(range(len(problems)), key=lambda i: (-lengths[i], i))
    per_chunk = max(1, batch_size // n)
    chunks = [order[lo : lo + per_chunk] for lo in range(0, len(order), per_chunk)]
    todo = [
        (j, chunk)
        for j, chunk in enumerate(chunks)
        if any((problems[i].id, s) not in records for i in chunk for s in range(n))
    ]
    total = sum((problems[i].id, s) not in records for _, c in todo for i in c for s in range(n))

    def finish(job: tuple[Future[list[Any]], list[SampleRecord]]) -> None:
        future, fresh = job
        for record, verdict in zip(fresh, future.result(), strict=True):
            record.update(
                extracted=verdict.extracted, correct=bool(verdict.correct), reason=verdict.reason
            )
            records[(record["problem_id"], record["sample"])] = record
        if on_samples is not None:
            on_samples(fresh)
        if bar is not None:
            bar.advance(task, len(fresh))

    bar, task = _progress_bar(progress, label, total)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oreal-verify") as pool:
            pending: tuple[Future[list[Any]], list[SampleRecord]] | None = None
            try:
                for j, chunk in todo:
                    params = sampling
                    if sampling.seed is not None:
                        params = dataclasses.replace(sampling, seed=sampling.seed + j)
                    batch = generator.generate([prompts[i] for i in chunk], params, n)
                    fresh = []
                    for out in batch.outputs:
                        problem = problems[chunk[out.group]]
                        if (problem.id, out.sample) in records:
                            continue
                        fresh.append(_record(problem, out))
                    future = pool.submit(
                        verifier.verify_batch,
                        [r["gold"] for r in fresh],
                        [r["response"] for r in fresh],
                        [r["truncated"] for r in fresh],
                    )
                    if pending is not None:
                        job, pending = pending, None  # never finish (and report) a job twice
                        finish(job)
                    pending = (future, fresh)
            except BaseException:
                # Keep what is already generated (interrupted runs resume from it), then re-raise.
                if pending is not None and pending[0].exception() is None:
                    finish(pending)
                raise
            if pending is not None:
                job, pending = pending, None
                finish(job)
    finally:
        if bar is not None:
            bar.stop()

    result = summarize(problems, records, n=n, ks=ks, verifier=verifier)
    result.template = template
    result.sampling = sampling_settings(sampling, n)
    result.wall_time_s = time.perf_counter() - start
    return result


def _record(problem: Problem, out: Any) -> SampleRecord:
    return {
        "problem_id": problem.id,
        "sample": out.sample,
        "prompt": out.prompt,
        "response": out.text,
        "gold": problem.answer,
        "response_tokens": len(out.response_ids),
        "truncated": bool(out.truncated),
        "finish_reason": out.finish_reason,
    }


def _progress_bar(enabled: bool, label: str, total: int) -> tuple[Any, Any]:
    """A rich progress bar on stderr (samples done, rate, ETA), or ``(None, None)``."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task(label, total=total)
    bar.start()
    return bar, task
