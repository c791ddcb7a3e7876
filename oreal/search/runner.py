"""``oreal search`` as a library call: check every input, run methods x budgets, write, resume.

Each (benchmark, method, budget) is one ``evaluate_problems`` run with the strategy as the
generator, so verification, maj@1/pass@1 and the per-sample records are exactly ``oreal eval``'s.
Everything that can be wrong with the inputs is checked before the output directory is touched.
Records are appended to ``generations.jsonl`` per chunk with their method, budget and search
costs; ``--resume`` reads them back and runs only what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from oreal.atomic import atomic_write_json
from oreal.eval.runner import (
    GENERATIONS_FILE,
    SETTINGS_FILE,
    EvalInputError,
    GenerationsLog,
    _check_resume,
    _load_benchmarks,
    make_generator,
)

__all__ = ["SearchSettings", "check_search_inputs", "run_search"]

OUTCOME_SCORERS = ("verifier", "orm")


class SearchSettings(BaseModel):
    """Everything that determines the searches; a resume must match it exactly."""

    model_config = ConfigDict(extra="forbid")

    model: str
    model_path: str
    benchmarks: list[str]
    methods: list[str]
    budgets: list[int]
    scorer: str | None = None
    scorer_kind: str | None = None
    aggregation: str = "last"
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 1024
    max_steps: int = 40
    tau: float = 1.0
    resampling: Literal["multinomial", "systematic"] = "multinomial"
    beam_width: int = 4
    sweeps: int = 2
    limit: int | None = None
    mode: Literal["strict", "lenient"] = "strict"
    template: str = "chat"
    batch_size: int = 8
    generation_batch_size: int = 64
    seed: int = 0
    autocast: bool = True
    backend: Literal["auto", "fast", "hf"] = "auto"
    question_field: str = "question"
    answer_field: str = "answer"

    def search_config(self) -> Any:
        from oreal.search.strategies import SearchConfig

        return SearchConfig(
            aggregation=self.aggregation,  # type: ignore[arg-type]
            max_steps=self.max_steps,
            tau=self.tau,
            resampling=self.resampling,
            beam_width=self.beam_width,
            sweeps=self.sweeps,
            seed=self.seed,
        )


def check_search_inputs(settings: SearchSettings) -> dict[tuple[str, int], str]:
    """Raise :class:`EvalInputError` for unusable settings; return the skipped (method, budget)
    pairs with the reason (particle Gibbs is undefined below 2 particles per sweep)."""
    from oreal.search.algorithms import AGGREGATIONS
    from oreal.search.strategies import METHODS, budget_problem

    unknown = [m for m in settings.methods if m not in METHODS]
    if unknown or not settings.methods:
        raise EvalInputError(
            f"unknown --method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}"
            " or 'all'"
        )
    if not settings.budgets or min(settings.budgets) < 1:
        raise EvalInputError("--budget needs positive integers, e.g. 1,2,4,8,16")
    if settings.aggregation not in AGGREGATIONS:
        raise EvalInputError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}")
    scored = [m for m in settings.methods if m != "majority"]
    if scored and settings.scorer is None:
        raise EvalInputError(
            f"{', '.join(scored)} need a --scorer: 'verifier' (oracle), 'likelihood', an oreal "
            "train run directory (its token RM), or a local PRM / outcome RM directory"
        )
    if settings.scorer_kind in OUTCOME_SCORERS and settings.aggregation not in ("last", "model"):
        raise EvalInputError(
            f"the {settings.scorer_kind} scorer judges whole solutions (one score each), so "
            f"--aggregation {settings.aggregation} is meaningless; use last or model"
        )
    if settings.temperature == 0 and max(settings.budgets) > 1:
        raise EvalInputError(
            "search with a budget above 1 needs sampling: set --temperature > 0 (0.8 is the "
            "particle-filtering default)"
        )
    numbers = {
        "--max-new-tokens": settings.max_new_tokens,
        "--max-steps": settings.max_steps,
        "--beam-width": settings.beam_width,
        "--sweeps": settings.sweeps,
        "--batch-size": settings.batch_size,
        "--generation-batch-size": settings.generation_batch_size,
    }
    for option, value in numbers.items():
        if value < 1:
            raise EvalInputError(f"{option} must be >= 1, got {value}")
    if not settings.tau > 0:
        raise EvalInputError(f"--tau must be positive, got {settings.tau}")
    config = settings.search_config()
    skipped = {}
    for method in settings.methods:
        for budget in settings.budgets:
            reason = budget_problem(method, budget, config)
            if reason is not None:
                skipped[(method, budget)] = reason
        if all((method, b) in skipped for b in settings.budgets):
            raise EvalInputError(f"no budget in {settings.budgets} fits {method}: {reason}")
    return skipped


def run_search(
    settings: SearchSettings,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    threads: int | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Run every (benchmark, method, budget) and write the output files; returns results.json."""
    from oreal.data import TemplateError, get_template, render_prompt

    skipped = check_search_inputs(settings)
    try:
        get_template(settings.template)
    except TemplateError as error:
        raise EvalInputError(str(error)) from error
    benchmarks = _load_benchmarks(settings)  # type: ignore[arg-type]
    _check_resume(out_dir, settings, resume)  # type: ignore[arg-type]

    from oreal.eval.evaluate import evaluate_problems
    from oreal.models import load_policy
    from oreal.rollout import SamplingParams
    from oreal.search.report import write_search_outputs
    from oreal.search.strategies import POOLED_METHODS, SamplePool, build_strategy
    from oreal.verify import Verifier

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        model, tokenizer = load_policy(settings.model_path)
    except (OSError, ValueError, ModuleNotFoundError) as error:
        raise EvalInputError(f"cannot load model {settings.model!r}: {error}") from error
    try:
        render_prompt(next(iter(benchmarks.values()))[0], tokenizer, settings.template)
    except TemplateError as error:
        raise EvalInputError(str(error)) from error
    # oreal eval's --backend choice (fast CPU engine where it runs), with the generator's batch.
    engine = SimpleNamespace(
        backend=settings.backend,
        batch_size=settings.generation_batch_size,
        autocast=settings.autocast,
    )
    generator = make_generator(model, tokenizer, engine)
    sampling = SamplingParams(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )
    config = settings.search_config()
    runs = [
        (name, method, budget)
        for name in benchmarks
        for method in settings.methods
        for budget in settings.budgets
        if (method, budget) not in skipped
    ]
    with Verifier(mode=settings.mode) as verifier:
        scorer = _load_scorer(settings, verifier, model, tokenizer)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / SETTINGS_FILE, settings.model_dump(mode="json"))
        log = GenerationsLog(out_dir / GENERATIONS_FILE)
        previous = log.read() if resume else []
        log.rewrite(previous)
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        start = time.perf_counter()
        pooled = [b for m, b in settings_pairs(settings) if m in POOLED_METHODS]
        pool = SamplePool(max(pooled)) if pooled else None
        sizes = {name: len(problems) for name, problems in benchmarks.items()}
        bar = _SearchProgress(progress, sum(b * sizes[n] for n, _, b in runs), console)
        entries: dict[str, dict[str, dict[str, Any]]] = {}
        try:
            for name, method, budget in runs:
                problems = benchmarks[name]
                strategy = build_strategy(
                    method,
                    generator,
                    scorer,
                    budget=budget,
                    config=config,
                    verifier=verifier,
                    pool=pool,
                )
                strategy.register_problems(problems, settings.template)
                done = [
                    r
                    for r in previous
                    if (r["benchmark"], r.get("method"), r.get("budget")) == (name, method, budget)
                ]
                bar.advance(budget * len(done), f"{name} {method} N={budget}")
                fresh: list[dict[str, Any]] = []
                write = _writer(log, strategy, (name, method, budget), fresh, bar)
                result = evaluate_problems(
                    strategy,
                    problems,
                    template=settings.template,
                    sampling=sampling,
                    verifier=verifier,
                    n=1,
                    ks=(1,),
                    batch_size=settings.batch_size,
                    on_samples=write,
                    previous=done,
                    label=f"{method} N={budget}",
                )
                entry = result.to_dict()
                entry["resumed_samples"] = len(done)
                entry["compute"] = compute_summary([*done, *fresh], len(problems))
                entries.setdefault(name, {}).setdefault(method, {})[str(budget)] = entry
        finally:
            bar.stop()
    for name in benchmarks:
        for (method, budget), reason in skipped.items():
            entries.setdefault(name, {}).setdefault(method, {})[str(budget)] = {"skipped": reason}
    document = {
        "model": settings.model,
        "model_path": settings.model_path,
        "scorer": settings.scorer,
        "scorer_kind": settings.scorer_kind,
        "settings": settings.model_dump(mode="json"),
        "started_at": started_at,
        "wall_time_s": time.perf_counter() - start,
        "benchmarks": {
            name: {m: entries[name][m] for m in settings.methods if m in entries.get(name, {})}
            for name in benchmarks
        },
    }
    write_search_outputs(out_dir, document)
    return document


def settings_pairs(settings: SearchSettings) -> list[tuple[str, int]]:
    return [(m, b) for m in settings.methods for b in settings.budgets]


def compute_summary(records: Sequence[dict[str, Any]], num_problems: int) -> dict[str, float]:
    """Per-problem means of what the searches cost, and the total search wall time."""
    fields = ("generated_tokens", "generated_sequences", "scored_sequences", "steps", "wall_s")
    totals = dict.fromkeys(fields, 0.0)
    for record in records:
        costs = record.get("search") or {}
        for key in fields:
            totals[key] += float(costs.get(key) or 0.0)
    count = max(1, num_problems)
    summary = {f"{key}_per_problem": totals[key] / count for key in fields}
    summary["wall_s"] = totals["wall_s"]
    return summary


def _load_scorer(settings: SearchSettings, verifier: Any, model: Any, tokenizer: Any) -> Any:
    if settings.scorer is None:
        return None
    from oreal.search.scorers import load_scorer

    try:
        return load_scorer(
            settings.scorer,
            verifier=verifier,
            policy=model,
            tokenizer=tokenizer,
            autocast=settings.autocast,
        )
    except (OSError, ValueError, KeyError) as error:
        raise EvalInputError(f"cannot load scorer {settings.scorer!r}: {error}") from error


def _writer(
    log: GenerationsLog,
    strategy: Any,
    run: tuple[str, str, int],
    fresh: list[dict[str, Any]],
    bar: _SearchProgress,
) -> Callable[[list[dict[str, Any]]], None]:
    name, method, budget = run

    def write(records: list[dict[str, Any]]) -> None:
        rows = []
        for record in records:
            stats = strategy.pop_stats(record["prompt"], record["sample"])
            row = {"benchmark": name, "method": method, "budget": budget, **record}
            row["search"] = stats.to_dict() if stats is not None else {}
            rows.append(row)
        log.append(rows)
        fresh.extend(rows)
        bar.advance(budget * len(rows))

    return write


class _SearchProgress:
    """One rich bar over all runs, in budget-weighted problems (a budget-16 search weighs 16)."""

    def __init__(self, enabled: bool, total: int, console: Any) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
        )
        self.task = self.bar.add_task("search", total=max(1, total))
        self.bar.start()

    def advance(self, amount: int, description: str | None = None) -> None:
        if self.bar is None:
            return
        if description is not None:
            self.bar.update(self.task, description=description)
        self.bar.advance(self.task, amount)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
