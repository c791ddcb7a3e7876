"""``oreal search MODEL``: inference-time scaling, accuracy against budget for each method.

Register with ``app.command("search")(search_command)``. Bad inputs exit with code 2 before
anything is written; the output directory has ``oreal eval``'s layout (results.json, report.md,
generations.jsonl, settings.json) plus accuracy_vs_budget.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["search_command"]


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{option}: expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise typer.BadParameter(f"{option} needs at least one value")
    return sorted(set(values))


def split_benchmarks(text: str) -> list[str]:
    """Comma-separated benchmarks, where a synthetic spec may hold commas of its own
    (``synthetic:arithmetic?n=64&ops=add,sub``): after a spec with a query, a piece that is not a
    bundled name, a source with ``:`` or an existing path continues that query."""
    from oreal.data import benchmark_names

    names: list[str] = []
    for piece in (part.strip() for part in text.split(",")):
        if not piece:
            continue
        continues = (
            names
            and "?" in names[-1]
            and ":" not in piece
            and piece not in benchmark_names()
            and not Path(piece).exists()
        )
        if continues:
            names[-1] += "," + piece
        else:
            names.append(piece)
    return names


def _methods(text: str) -> list[str]:
    from oreal.search.strategies import METHODS

    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(METHODS)
    return list(dict.fromkeys(names))


def search_command(
    model: Annotated[
        str,
        typer.Argument(
            help="The policy: Hugging Face id or local path, 'embedded' (SmolLM2-135M-Instruct), "
            "an 'oreal train' run directory (latest checkpoint) or a checkpoints/step-N directory."
        ),
    ],
    benchmarks: Annotated[
        str,
        typer.Option("--benchmarks", "-b", help="Comma-separated benchmarks, as for oreal eval."),
    ] = "math500",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="Comma-separated methods, or 'all': majority, best_of_n, weighted_majority, "
            "beam_search, dvts, particle_filtering, particle_gibbs.",
        ),
    ] = "particle_filtering",
    budget: Annotated[
        str,
        typer.Option(help="Comma-separated budgets N (full-solution equivalents)."),
    ] = "1,2,4,8,16",
    scorer: Annotated[
        str | None,
        typer.Option(
            help="'verifier' (oracle, needs gold), 'likelihood' (the policy's own), an oreal "
            "train run directory (its token RM), or a local PRM (Qwen2.5-Math-PRM format) or "
            "outcome RM directory. Not needed for majority alone."
        ),
    ] = None,
    aggregation: Annotated[
        str, typer.Option(help="Step scores -> solution score: last, min, prod, mean, max, model.")
    ] = "last",
    temperature: Annotated[float, typer.Option(help="Sampling temperature.", min=0.0)] = 0.8,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.", min=0.0, max=1.0)] = 1.0,
    max_new_tokens: Annotated[
        int, typer.Option(help="Token budget of one solution.", min=1)
    ] = 1024,
    max_steps: Annotated[int, typer.Option(help="Step cap of step-level methods.", min=1)] = 40,
    tau: Annotated[float, typer.Option(help="Softmax temperature of resampling.")] = 1.0,
    resampling: Annotated[
        str, typer.Option(help="Particle resampling: multinomial or systematic.")
    ] = "multinomial",
    beam_width: Annotated[
        int, typer.Option(help="Continuations per kept beam / DVTS node (M).", min=1)
    ] = 4,
    sweeps: Annotated[int, typer.Option(help="Particle Gibbs sweeps.", min=1)] = 2,
    limit: Annotated[
        int | None, typer.Option(help="Use the first N problems (file order).", min=1)
    ] = None,
    mode: Annotated[str, typer.Option(help="Verifier mode: strict or lenient.")] = "strict",
    template: Annotated[
        str | None,
        typer.Option(help="Prompt template (default: the run's for a run directory, else chat)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default search-results/<model>-<time>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the search already in --out.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Problems searched together.", min=1)] = 8,
    generation_batch_size: Annotated[
        int, typer.Option(help="Sequences per forward batch of the generator.", min=1)
    ] = 64,
    seed: Annotated[int, typer.Option(help="Seed of sampling and resampling.")] = 0,
    backend: Annotated[
        str,
        typer.Option(
            help="Generation engine: auto (the fast CPU engine where it runs, else "
            "transformers), fast or hf. Only the fast engine keys each search's randomness."
        ),
    ] = "auto",
    no_autocast: Annotated[
        bool, typer.Option("--no-autocast", help="fp32 compute instead of bf16 autocast.")
    ] = False,
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads (lower it on a busy box).", min=1)
    ] = None,
) -> None:
    """Search at inference time (majority vote, best-of-N, weighted majority, beam search, DVTS,
    particle filtering, particle Gibbs) and report accuracy against budget with its compute."""
    from oreal.cli.common import default_out_dir, fail, stderr_console
    from oreal.errors import UserError
    from oreal.eval.runner import EvalInputError, run_template
    from oreal.runs import resolve_model
    from oreal.search.runner import SearchSettings, check_search_inputs, run_search
    from oreal.search.scorers import scorer_kind

    console = stderr_console()
    try:
        if backend not in ("auto", "fast", "hf"):
            raise EvalInputError(f"--backend must be auto, fast or hf, got {backend!r}")
        if mode not in ("strict", "lenient"):
            raise EvalInputError(f"--mode must be 'strict' or 'lenient', got {mode!r}")
        if resampling not in ("multinomial", "systematic"):
            raise EvalInputError(
                f"--resampling must be multinomial or systematic, got {resampling!r}"
            )
        if resume and out is None:
            raise EvalInputError("--resume needs --out (the directory to continue)")
        names = split_benchmarks(benchmarks)
        if not names:
            raise EvalInputError("--benchmarks is empty")
        budgets = _int_list(budget, "--budget")
        kind = None if scorer is None else scorer_kind(scorer)
        model_path, run_dir = resolve_model(model)
        chosen = template or run_template(run_dir) or "chat"
        settings = SearchSettings(
            model=model,
            model_path=model_path,
            benchmarks=names,
            methods=_methods(method),
            budgets=budgets,
            scorer=str(Path(scorer).expanduser())
            if kind not in (None, "verifier", "likelihood")
            else scorer,
            scorer_kind=kind,
            aggregation=aggregation,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            max_steps=max_steps,
            tau=tau,
            resampling=resampling,  # type: ignore[arg-type]
            beam_width=beam_width,
            sweeps=sweeps,
            limit=limit,
            mode=mode,  # type: ignore[arg-type]
            template=chosen,
            batch_size=batch_size,
            generation_batch_size=generation_batch_size,
            seed=seed,
            autocast=not no_autocast,
            backend=backend,  # type: ignore[arg-type]
        )
        skipped = check_search_inputs(settings)
        out_dir = out if out is not None else default_out_dir(model, "search-results")
        console.print(
            f"[bold]oreal search[/bold] {model} -> {out_dir} | methods={','.join(settings.methods)}"
            f" budgets={budgets} scorer={scorer} ({kind}) aggregation={aggregation} "
            f"T={temperature} max_new_tokens={max_new_tokens} template={chosen}",
            highlight=False,
        )
        for (name, n), reason in skipped.items():
            console.print(f"[yellow]skipping[/yellow] {name} N={n}: {reason}", highlight=False)
        document = run_search(
            settings, out_dir, resume=resume, progress=True, threads=threads, console=console
        )
    except (UserError, typer.BadParameter) as error:
        fail(error, console)
    _print_summary(console, document, out_dir)


def _print_summary(console: Console, document: dict[str, Any], out_dir: Path) -> None:
    """Accuracy by method and budget on stdout; compute and settings are in report.md."""
    from rich.console import Console
    from rich.table import Table

    stdout = Console()
    if not stdout.is_terminal:
        stdout = Console(width=200)
    for name, runs in document["benchmarks"].items():
        budgets = sorted({b for entries in runs.values() for b in entries}, key=int)
        table = Table(title=f"{name}: accuracy (%) by budget N")
        table.add_column("method", no_wrap=True)
        for b in budgets:
            table.add_column(f"N={b}", justify="right")
        for method, entries in runs.items():
            cells = []
            for b in budgets:
                entry = entries.get(b)
                cells.append(
                    "-"
                    if not entry
                    else "n/a"
                    if "skipped" in entry
                    else f"{100 * entry['accuracy']:.1f}"
                )
            table.add_row(method, *cells)
        stdout.print(table)
    console.print(
        f"wrote {out_dir}/results.json, report.md, generations.jsonl, accuracy_vs_budget.png"
    )
