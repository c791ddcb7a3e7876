"""``oreal data list`` and ``oreal data show``: look at the problems before training on them.

``show`` takes any :func:`oreal.data.load_problems` source, so the same string that goes into a
config can be checked here first (and a typo fails here, with exit code 2, rather than an hour
into a run).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(
    help="Bundled benchmarks, user data and synthetic tasks.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("list")
def list_command() -> None:
    """Print the bundled benchmarks and training sets."""
    from rich.console import Console
    from rich.table import Table

    from oreal.data import list_benchmarks

    table = Table(title="Bundled data (oreal data show NAME)")
    for column in ("name", "kind", "size", "source", "license"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for info in list_benchmarks():
        size = f"{info.size}" + (f" (-{info.skipped})" if info.skipped else "")
        table.add_row(info.name, info.kind, size, info.source, info.license)
    Console().print(table)
    typer.echo("Also: any .jsonl/.json/.parquet/.csv file, hf:ID, synthetic:arithmetic?n=64")


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Bundled name, file, hf:ID or synthetic:... spec.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Problems to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    question_field: Annotated[str, typer.Option(help="Column holding the question.")] = "question",
    answer_field: Annotated[str, typer.Option(help="Column holding the answer.")] = "answer",
    id_field: Annotated[str | None, typer.Option(help="Column holding the id.")] = None,
    split: Annotated[str, typer.Option(help="Split of a Hugging Face dataset.")] = "train",
) -> None:
    """Print the first problems of NAME, normalised as training and evaluation see them."""
    from oreal.cli.common import fail
    from oreal.data import load_problems

    try:
        problems = load_problems(
            name,
            question_field=question_field,
            answer_field=answer_field,
            id_field=id_field,
            split=split,
            limit=limit,
        )
    except (ValueError, ImportError) as error:  # DataError, an unknown name, a missing extra
        fail(error)

    if as_json:
        for problem in problems:
            typer.echo(json.dumps(problem.model_dump(), ensure_ascii=False, default=str))
        return

    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    console = Console()
    for problem in problems:
        body = Text(problem.question)
        body.append("\n\nanswer: ", style="bold")
        body.append(json.dumps(problem.answer, ensure_ascii=False))
        shown = {k: v for k, v in problem.metadata.items() if k != "solution" and v is not None}
        if shown:
            extras = ", ".join(f"{k}={_clip(v)}" for k, v in shown.items())
            body.append(f"\n{extras}", style="dim")
        console.print(Panel(body, title=problem.id, title_align="left"))
    console.print(f"{len(problems)} problem(s) from {name}")


def _clip(value: object, width: int = 80) -> str:
    """Metadata can hold whole solutions or URLs; one line each is enough to recognise them."""
    text = str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."
