"""``oreal verify``: check one answer, or a JSONL file of (gold, response) pairs.

One pair: ``oreal verify --gold 25 --response '... \\boxed{025}'`` prints a JSON verdict.
A file: each line has ``gold`` (or ``answer``: a string, a number or a list of them) and
``response`` (and optionally ``truncated``); each output line is the input plus ``correct``,
``extracted`` and ``reason``. The whole file is validated before any work: malformed lines
(all of them are listed, the first 20 by number) or an empty file stop the run with exit code 2
and nothing written; ``--out`` is replaced atomically. Output is always valid UTF-8.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from oreal.atomic import atomic_write_text, describe_os_error
from oreal.cli.common import fail

_BATCH = 2048
_PROGRESS_MIN = 1000


_MAX_REPORTED = 20


class _BadInput(Exception):
    """The input file cannot be verified: the message names every bad line (capped)."""


def _is_scalar_gold(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _is_gold(value: Any) -> bool:
    """A string or a number (not a bool), or a non-empty list of them: what the API accepts."""
    if isinstance(value, list):
        return bool(value) and all(_is_scalar_gold(v) for v in value)
    return _is_scalar_gold(value)


def _check_row(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """One input line as a row, or the reason it is bad."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return None, f"not valid UTF-8 (byte {error.start})"
    except json.JSONDecodeError as error:
        return None, f"invalid JSON ({error.msg})"
    if not isinstance(row, dict):
        return None, "expected a JSON object"
    gold = row.get("gold", row.get("answer"))
    if gold is None:
        return None, "missing field 'gold' (or 'answer')"
    if not _is_gold(gold):
        return None, "'gold' must be a string, a number or a list of them"
    if "response" not in row:
        return None, "missing field 'response'"
    if not isinstance(row["response"], str):
        return None, "'response' must be a string"
    if not isinstance(row.get("truncated", False), bool):
        return None, "'truncated' must be true or false"
    return row, None


def _load(path: Path) -> list[dict[str, Any]]:
    """Parse and validate every line first (blank lines are skipped); every bad line is
    reported, the first ``_MAX_REPORTED`` by number and the rest as a count."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    bad = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            row, problem = _check_row(raw)
            if problem is not None:
                bad += 1
                if len(problems) < _MAX_REPORTED:
                    problems.append(f"line {number}: {problem}")
            elif row is not None:
                rows.append(row)
    if bad:
        more = f"; ... and {bad - len(problems)} more" if bad > len(problems) else ""
        raise _BadInput(f"{bad} bad line(s): " + "; ".join(problems) + more)
    if not rows:
        raise _BadInput("no rows to verify (the file is empty or blank)")
    return rows


def _json_line(row: dict[str, Any]) -> str:
    """One output line, always valid UTF-8: a lone surrogate (``"\\udcff"`` is valid JSON, and
    so a possible model output) cannot be encoded, so such a row is written ASCII-escaped,
    which reads back as the same string."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row, ensure_ascii=True)
    return line + "\n"


def _write_stdout(lines: list[str]) -> None:
    """Result lines as UTF-8 bytes, whatever the terminal's encoding (they are valid UTF-8)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a replaced stdout (notebooks, tests) takes text
        sys.stdout.writelines(lines)
    else:
        sys.stdout.flush()
        buffer.writelines(line.encode("utf-8") for line in lines)
    sys.stdout.flush()


def _run_file(rows: list[dict[str, Any]], verifier: Any) -> list[str]:
    """Verdicts in batches, with a progress bar on stderr for large files."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    out: list[str] = []
    show = len(rows) >= _PROGRESS_MIN
    with Progress(
        "[bold]verify",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    ) as progress:
        task = progress.add_task("verify", total=len(rows))
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            verdicts = verifier.verify_batch(
                [r.get("gold", r.get("answer")) for r in batch],
                [r["response"] for r in batch],
                [r.get("truncated", False) for r in batch],
            )
            for row, verdict in zip(batch, verdicts, strict=True):
                row.update(verdict.to_dict())
                out.append(_json_line(row))
            progress.advance(task, len(batch))
    return out


def verify_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="JSONL with 'gold' (or 'answer') and 'response' per line.",
            metavar="FILE",
            dir_okay=False,
        ),
    ] = None,
    gold: Annotated[str | None, typer.Option("--gold", help="Gold answer (single check).")] = None,
    response: Annotated[
        str | None, typer.Option("--response", help="Model response (single check).")
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="strict (final \\boxed{} only) or lenient.")
    ] = "strict",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write result lines here (atomic); else stdout.")
    ] = None,
    truncated: Annotated[
        bool, typer.Option("--truncated", help="Single check: the response was cut off.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds per check.")] = 5.0,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes (default: CPUs).")
    ] = None,
) -> None:
    """Verify answers against gold answers (exit code 2 on bad input)."""
    from oreal.verify import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"must be one of {', '.join(MODES)}", param_hint="--mode")
    single = gold is not None or response is not None
    if file is not None and single:
        raise typer.BadParameter("give either FILE or --gold/--response, not both")
    if file is None and not (gold is not None and response is not None):
        raise typer.BadParameter("give FILE, or both --gold and --response")

    from oreal.verify import Verifier

    if file is None:
        assert gold is not None and response is not None
        with Verifier(mode=mode, timeout=timeout, workers=workers or 1) as verifier:
            verdict = verifier.verify(gold, response, truncated=truncated)
        typer.echo(_json_line(verdict.to_dict()), nl=False)
        return

    try:
        rows = _load(file)
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror or error}")
    except _BadInput as error:
        fail(f"{file}: {error}")

    with Verifier(mode=mode, timeout=timeout, workers=workers) as verifier:
        lines = _run_file(rows, verifier)
    if out is not None:
        try:
            atomic_write_text(out, "".join(lines))
        except OSError as error:
            fail(describe_os_error(error, out))
    else:
        _write_stdout(lines)
    _summary(rows, to_stderr=out is None)


def _summary(rows: list[dict[str, Any]], *, to_stderr: bool) -> None:
    """Count, correct and accuracy; on stderr when stdout carries the result lines."""
    from rich.console import Console
    from rich.table import Table

    correct = sum(bool(r["correct"]) for r in rows)
    table = Table(title="oreal verify")
    for column in ("count", "correct", "accuracy"):
        table.add_column(column, justify="right")
    accuracy = correct / len(rows) if rows else 0.0
    table.add_row(str(len(rows)), str(correct), f"{accuracy:.4f}")
    Console(stderr=to_stderr).print(table)
