"""``oreal eval`` as a library call: resolve the model, check every input, run, write, resume.

Everything that can be wrong with the inputs (k > n, an unknown benchmark or template, a missing
model path, a resume with other settings) is checked before the output directory is touched, so
a bad command leaves nothing half-written. Generations are appended to ``generations.jsonl`` and
flushed per chunk; ``--resume`` reads them back and generates only what is missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from oreal.atomic import atomic_write_json, atomic_write_text
from oreal.errors import UserError
from oreal.eval.report import write_outputs
from oreal.runs import resolve_model

__all__ = [
    "EvalInputError",
    "EvalSettings",
    "GenerationsLog",
    "check_sampling",
    "default_ks",
    "resolve_model",
    "run_evaluation",
    "run_template",
]

SETTINGS_FILE = "settings.json"
GENERATIONS_FILE = "generations.jsonl"
RESULTS_FILE = "results.json"


class EvalInputError(UserError):
    """A bad command-line input; the CLI prints it and exits with code 2."""


class EvalSettings(BaseModel):
    """Everything that determines the generations; a resume must match it exactly."""

    # pydantic < 2.10 reserves every model_* field name and warns about model/model_path on import
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    model_path: str
    benchmarks: list[str]
    n: int = 1
    ks: list[int] = [1]
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    limit: int | None = None
    mode: Literal["strict", "lenient"] = "strict"
    template: str = "chat"
    batch_size: int = 16
    seed: int = 0
    autocast: bool = True
    question_field: str = "question"
    answer_field: str = "answer"
    backend: Literal["auto", "fast", "hf"] = "auto"


def default_ks(n: int) -> list[int]:
    """1, the powers of two below ``n``, and ``n``: the usual x-axis of a pass@k curve."""
    ks = {1, n}
    power = 2
    while power < n:
        ks.add(power)
        power *= 2
    return sorted(ks)


def check_sampling(n: int, ks: Sequence[int], temperature: float) -> None:
    """Reject settings whose numbers would be meaningless, with the fix in the message."""
    if n < 1:
        raise EvalInputError(f"--n must be >= 1, got {n}")
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise EvalInputError(
            f"every k must be between 1 and n={n}; got {bad}. pass@k and maj@k need at least k "
            f"samples per problem: raise --n or lower --k."
        )
    if n > 1 and temperature == 0:
        raise EvalInputError(
            f"--n {n} with --temperature 0 would repeat one greedy answer {n} times; set a "
            "sampling temperature (e.g. --temperature 0.6) or use --n 1 for greedy pass@1."
        )


def run_template(run_dir: Path | None) -> str | None:
    """The prompt template a run was trained with (its config.yaml), to evaluate it the same way."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    template = (config.get("data") or {}).get("template")
    return template if isinstance(template, str) else None


class GenerationsLog:
    """``generations.jsonl``: one verified sample per line, appended and flushed per chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        """Complete records, in file order; a torn last line (killed mid-write) is dropped."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text("utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and {"benchmark", "problem_id", "sample"} <= set(record):
                records.append(record)
        return records

    def rewrite(self, records: Sequence[dict[str, Any]]) -> None:
        """Replace the file with ``records`` (drops torn lines before appending after them)."""
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        atomic_write_text(self.path, lines)

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def make_generator(model: Any, tokenizer: Any, settings: EvalSettings) -> Any:
    """``--backend``: the fast CPU engine (auto, on a CPU, for a supported architecture) or
    transformers ``generate``. Greedy outputs agree token for token in fp32 and up to bf16
    ties under bf16 (docs/rollout.md)."""
    import torch

    from oreal.rollout import FastGenerator, HFGenerator
    from oreal.rollout.llama_decoder import unsupported_reason

    on_cpu = next(model.parameters()).device.type == "cpu"
    fast = settings.backend == "fast" or (
        settings.backend == "auto" and on_cpu and unsupported_reason(model) is None
    )
    if fast:
        if not on_cpu or unsupported_reason(model) is not None:
            reason = unsupported_reason(model) or "the model is not on the CPU"
            raise EvalInputError(f"--backend fast cannot run this model: {reason}")
        dtype = torch.bfloat16 if settings.autocast else torch.float32
        return FastGenerator(
            model, tokenizer, max_batch_size=settings.batch_size, matmul_dtype=dtype
        )
    return HFGenerator(
        model, tokenizer, max_batch_size=settings.batch_size, autocast=settings.autocast
    )


def _load_benchmarks(settings: EvalSettings) -> dict[str, list[Any]]:
    from oreal.data import load_problems

    loaded = {}
    for name in settings.benchmarks:
        try:
            problems = load_problems(
                name,
                limit=settings.limit,
                split="test",
                question_field=settings.question_field,
                answer_field=settings.answer_field,
            )
        except (ValueError, ImportError) as error:
            raise EvalInputError(f"benchmark {name!r}: {error}") from error
        if not problems:
            raise EvalInputError(f"benchmark {name!r} has no problems")
        loaded[name] = problems
    return loaded


def _check_resume(out_dir: Path, settings: EvalSettings, resume: bool) -> None:
    saved_path = out_dir / SETTINGS_FILE
    started = saved_path.is_file() or (out_dir / GENERATIONS_FILE).is_file()
    if not resume:
        if started:
            raise EvalInputError(
                f"{out_dir} already holds an evaluation; pass --resume to continue it or choose "
                "another --out"
            )
        return
    if not saved_path.is_file():
        if (out_dir / GENERATIONS_FILE).is_file():
            raise EvalInputError(f"{out_dir} has generations but no {SETTINGS_FILE}; cannot resume")
        return  # nothing to resume: a fresh start
    saved = json.loads(saved_path.read_text("utf-8"))
    current = settings.model_dump(mode="json")
    diffs = [
        f"{key}: saved {saved.get(key)!r}, now {current[key]!r}"
        for key in current
        if saved.get(key) != current[key]
    ]
    if diffs:
        raise EvalInputError(
            f"--resume settings differ from those saved in {saved_path}: " + "; ".join(diffs)
        )


def run_evaluation(
    settings: EvalSettings,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``settings.model`` on every benchmark and write the output files to ``out_dir``.

    Raises :class:`EvalInputError` for bad inputs before anything is written. Returns the
    content of ``results.json``. ``threads`` sets torch's CPU threads: on a machine shared with
    other jobs, fewer threads than cores avoids oversubscription, which can slow CPU decoding
    down several-fold.
    """
    check_sampling(settings.n, settings.ks, settings.temperature)
    if settings.batch_size < 1 or settings.max_new_tokens < 1:
        raise EvalInputError("--batch-size and --max-new-tokens must be >= 1")
    from oreal.data import TemplateError, get_template

    try:
        get_template(settings.template)
    except TemplateError as error:
        raise EvalInputError(str(error)) from error
    benchmarks = _load_benchmarks(settings)
    _check_resume(out_dir, settings, resume)

    from oreal.data import render_prompt
    from oreal.eval.evaluate import evaluate_problems
    from oreal.models import load_policy
    from oreal.rollout import SamplingParams
    from oreal.verify import Verifier

    if threads is not None:
        if threads < 1:
            raise EvalInputError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    try:
        model, tokenizer = load_policy(settings.model_path)
    except (OSError, ValueError, ModuleNotFoundError) as error:
        raise EvalInputError(f"cannot load model {settings.model!r}: {error}") from error
    try:  # a template the tokenizer cannot render fails now, not after writing settings
        render_prompt(next(iter(benchmarks.values()))[0], tokenizer, settings.template)
    except TemplateError as error:
        raise EvalInputError(str(error)) from error
    generator = make_generator(model, tokenizer, settings)
    sampling = SamplingParams(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / SETTINGS_FILE, settings.model_dump(mode="json"))
    log = GenerationsLog(out_dir / GENERATIONS_FILE)
    previous = log.read() if resume else []
    log.rewrite(previous)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    results: dict[str, Any] = {}
    with Verifier(mode=settings.mode) as verifier:
        for name, problems in benchmarks.items():
            done = [r for r in previous if r["benchmark"] == name]

            def write(records: list[dict[str, Any]], name: str = name) -> None:
                log.append([{"benchmark": name, **record} for record in records])

            result = evaluate_problems(
                generator,
                problems,
                template=settings.template,
                sampling=sampling,
                verifier=verifier,
                n=settings.n,
                ks=settings.ks,
                batch_size=settings.batch_size,
                on_samples=write,
                progress=progress,
                previous=done,
                label=name,
            )
            entry = result.to_dict()
            entry["resumed_samples"] = len(done)
            results[name] = entry
    document = {
        "model": settings.model,
        "model_path": settings.model_path,
        "settings": settings.model_dump(mode="json"),
        "started_at": started_at,
        "wall_time_s": time.perf_counter() - start,
        "benchmarks": results,
    }
    write_outputs(out_dir, document)
    return document
