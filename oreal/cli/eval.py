"""``oreal eval MODEL``: benchmark a policy (greedy pass@1 by default, pass@k / maj@k with --n).

Register with ``app.command("eval")(eval_command)``. Bad inputs (k > n, an unknown benchmark,
a missing model path, a resume with other settings) exit with code 2 before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["eval_command"]


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise typer.BadParameter(f"{option} needs at least one value")
    return sorted(set(values))


def eval_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Hugging Face id or local path, 'embedded' (SmolLM2-135M-Instruct), an "
            "'oreal train' run directory (latest checkpoint) or a checkpoints/step-N directory."
        ),
    ],
    benchmarks: Annotated[
        str,
        typer.Option(
            "--benchmarks",
            "-b",
            help="Comma-separated benchmarks: bundled names (math500, gsm8k, aime24, aime25, "
            "amc23, minerva_math, olympiadbench), files, hf:ID or synthetic:... specs.",
        ),
    ] = "math500",
    n: Annotated[int, typer.Option("--n", help="Samples per problem.")] = 1,
    k: Annotated[
        str | None,
        typer.Option("--k", help="Comma-separated k for pass@k/maj@k (default: 1,2,4,...,n)."),
    ] = None,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature; 0 = greedy (needs --n 1).", min=0.0)
    ] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.", min=0.0, max=1.0)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Response token budget.", min=1)] = 1024,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate the first N problems (file order).", min=1)
    ] = None,
    mode: Annotated[
        str, typer.Option(help="Verifier mode: strict (training reward) or lenient.")
    ] = "strict",
    template: Annotated[
        str | None,
        typer.Option(
            help="Prompt template (oreal.data.templates). Default: the run's training template "
            "for an 'oreal train' run, else 'chat'."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default eval-results/<model>-<time>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the evaluation already in --out.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Sequences per generate() call.", min=1)] = 16,
    backend: Annotated[
        str,
        typer.Option(
            help="auto (the fast CPU engine where it runs, else transformers), fast or hf."
        ),
    ] = "auto",
    question_field: Annotated[
        str, typer.Option(help="Column holding the question, in your own files.")
    ] = "question",
    answer_field: Annotated[
        str, typer.Option(help="Column holding the gold answer, in your own files.")
    ] = "answer",
    seed: Annotated[int, typer.Option(help="Sampling seed (chunk j uses seed + j).")] = 0,
    no_autocast: Annotated[
        bool, typer.Option("--no-autocast", help="fp32 compute instead of bf16 autocast.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch CPU threads (default: torch's choice); lower it on a busy box.", min=1
        ),
    ] = None,
) -> None:
    """Evaluate MODEL on math benchmarks: greedy pass@1 by default, or pass@k and maj@k from n
    samples. Writes results.json, report.md, generations.jsonl and pass_at_k.png to --out."""
    from rich.console import Console

    from oreal.cli.common import default_out_dir, fail
    from oreal.errors import UserError
    from oreal.eval.runner import (
        EvalInputError,
        EvalSettings,
        check_sampling,
        default_ks,
        resolve_model,
        run_evaluation,
        run_template,
    )

    console = Console(stderr=True)
    try:
        if backend not in ("auto", "fast", "hf"):
            raise EvalInputError(f"--backend must be auto, fast or hf, got {backend!r}")
        if mode not in ("strict", "lenient"):
            raise EvalInputError(f"--mode must be 'strict' or 'lenient', got {mode!r}")
        if resume and out is None:
            raise EvalInputError("--resume needs --out (the directory to continue)")
        names = [name.strip() for name in benchmarks.split(",") if name.strip()]
        if not names:
            raise EvalInputError("--benchmarks is empty")
        ks = _int_list(k, "--k") if k is not None else default_ks(n)
        check_sampling(n, ks, temperature)
        model_path, run_dir = resolve_model(model)
        chosen = template or run_template(run_dir) or "chat"
        settings = EvalSettings(
            model=model,
            model_path=model_path,
            benchmarks=names,
            n=n,
            ks=ks,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            limit=limit,
            mode=mode,  # type: ignore[arg-type]
            template=chosen,
            batch_size=batch_size,
            seed=seed,
            autocast=not no_autocast,
            question_field=question_field,
            answer_field=answer_field,
            backend=backend,  # type: ignore[arg-type]
        )
        out_dir = out if out is not None else default_out_dir(model, "eval-results")
        console.print(
            f"[bold]oreal eval[/bold] {model} -> {out_dir} | template={chosen} n={n} k={ks} "
            f"T={temperature} top_p={top_p} max_new_tokens={max_new_tokens}"
        )
        document = run_evaluation(settings, out_dir, resume=resume, progress=True, threads=threads)
    except (UserError, typer.BadParameter) as error:
        fail(error, console)
    _print_summary(console, document, out_dir)


def _print_summary(console: Console, document: dict[str, Any], out_dir: Path) -> None:
    """The headline numbers on stdout; the full breakdowns are in report.md."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{document['model']} (scores in %)")
    first = next(iter(document["benchmarks"].values()))
    ks = sorted(first["pass_at_k"], key=int)
    table.add_column("benchmark", no_wrap=True)
    for column in ["#", *[f"pass@{k}" for k in ks], *[f"maj@{k}" for k in ks if k != "1"]]:
        table.add_column(column, justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("trunc", justify="right")
    for name, entry in document["benchmarks"].items():
        cells = [name, str(entry["num_problems"])]
        cells += [f"{100 * entry['pass_at_k'][k]:.1f}" for k in ks]
        cells += [f"{100 * entry['maj_at_k'][k]:.1f}" for k in ks if k != "1"]
        cells += [f"{entry['mean_response_tokens']:.0f}", f"{100 * entry['truncation_rate']:.1f}"]
        table.add_row(*cells)
    stdout = Console()
    if not stdout.is_terminal:  # piped or captured: no 80-column squeeze of the numbers
        stdout = Console(width=200)
    stdout.print(table)
    console.print(f"wrote {out_dir}/results.json, report.md, generations.jsonl, pass_at_k.png")
