"""The ``oreal`` command line: a thin layer that parses arguments, calls the library, prints.

Every sub-command lives in its own module of this package; heavy imports (torch, transformers,
sympy) happen inside the commands so that ``oreal --help`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

import typer

from oreal.cli import data as data_commands
from oreal.cli import eval as eval_commands
from oreal.cli import inspect as inspect_commands
from oreal.cli import search as search_commands
from oreal.cli import train as train_commands
from oreal.cli import verify as verify_commands


def _version(value: bool) -> None:
    if value:
        from oreal import __version__

        typer.echo(f"oreal {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="oreal",
    help="Reinforcement learning from outcome rewards for LLM reasoning (OREAL and its family).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Reinforcement learning from outcome rewards for LLM reasoning."""


app.command("train")(train_commands.train_command)
app.command("eval")(eval_commands.eval_command)
app.command("verify")(verify_commands.verify_command)
app.command("inspect")(inspect_commands.inspect_command)
app.command("search")(search_commands.search_command)
app.add_typer(data_commands.app, name="data")


def configure_openmp(environ: MutableMapping[str, str]) -> None:
    """Short OpenMP spinning unless the user chose a wait policy or spin count.

    libgomp's threads spin for 300,000 iterations before sleeping: beside another busy process
    a decoding step (hundreds of short parallel regions) then waits on threads that are not
    running. A short spin keeps an idle machine's speed (passive waiting cost 1.4x there) and
    :mod:`oreal.threads` drops to fewer threads while another process holds a core
    (docs/performance.md#threads). libgomp reads it when torch loads, so it is set first.
    """
    if "OMP_WAIT_POLICY" not in environ:
        environ.setdefault("GOMP_SPINCOUNT", "2000")


#: oneDNN's cache of compiled matmul kernels, one per distinct shape: the update's token
#: streams and the rollouts' shrinking batches make new shapes every step, and at oneDNN's
#: default of 1024 entries the cache grew the demo's heap by about 50 MB a step (LoRA demo,
#: 11 steps: 0.45 -> 1.0 GB of live heap); 256 keeps the speed (docs/performance.md#memory).
ONEDNN_PRIMITIVE_CACHE = "256"


def configure_native_libraries(environ: MutableMapping[str, str]) -> None:
    """Settings of torch's native libraries that must exist before torch loads: OpenMP's
    spinning (:func:`configure_openmp`) and oneDNN's kernel-cache size
    (:data:`ONEDNN_PRIMITIVE_CACHE`); a value the user set wins."""
    configure_openmp(environ)
    environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE)


def main() -> None:
    # transformers' own "Loading weights" / "Writing model shards" bars would interleave with
    # oreal's progress; an explicit HF_HUB_DISABLE_PROGRESS_BARS=0 brings them back.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    configure_native_libraries(os.environ)
    app()
