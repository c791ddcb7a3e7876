"""``oreal inspect RUN_DIR [--step N] [--limit K] [--html OUT.html]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def inspect_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (it holds samples.jsonl).")],
    step: Annotated[
        int | None, typer.Option(help="Which logged step to show (default: the last one).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many samples.")] = 8,
    html: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained HTML page (inline CSS, no script) here."),
    ] = None,
) -> None:
    """Show logged rollouts with each token coloured by its token-RM weight: green for
    credited tokens of correct responses, red for blamed tokens of wrong ones."""
    from oreal.cli.common import fail
    from oreal.token_rm.inspect_view import InspectError, load_step, render_html, render_terminal

    console = Console()
    errors = Console(stderr=True)
    try:
        view = load_step(run_dir, step=step, limit=limit)
    except InspectError as error:
        fail(error, errors)
    render_terminal(view, console)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(view), encoding="utf-8")
        errors.print(f"wrote {html}")
