"""``oreal train [CONFIG] [key.path=value ...] [--resume RUN_DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from oreal.configs import list_presets

PRESET_HELP = "Shipped presets: " + ", ".join(list_presets()) + "."


def train_command(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            help="An optional config (YAML path or preset name) followed by dotted overrides "
            "such as algorithm.name=grpo optim.lr=2e-6. " + PRESET_HELP,
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this directory from its latest checkpoint."),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where to write the run (default runs/<name>-<time>).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch CPU threads (default: torch's choice). On a CPU shared with other "
            "work, 1 is often several times faster than 2.",
            min=1,
        ),
    ] = None,
) -> None:
    """Train a policy with RL from outcome rewards.

    With no config: the embedded CPU demo (configs/demo.yaml: SmolLM2-135M-Instruct, OREAL,
    addition and subtraction), evaluated before and after training.
    """
    from oreal.config_io import ConfigError, load_config
    from oreal.configs import resolve_config_path
    from oreal.train.config import OrealConfig

    console = Console(stderr=True)
    arguments = list(arguments or [])
    config_path: Path | None = None
    try:
        if arguments and "=" not in arguments[0]:
            if resume is not None:
                raise ConfigError("--resume takes the run's own config; do not pass another one")
            config_path = resolve_config_path(arguments.pop(0))
        elif resume is None:
            config_path = resolve_config_path("demo")
        overrides = arguments
        if resume is not None:
            resolved = resume / "config.yaml"
            if not resolved.is_file():
                raise ConfigError(f"{resume} is not a run directory (no config.yaml)")
            config = load_config(OrealConfig, resolved, overrides)
        else:
            config = load_config(OrealConfig, config_path, overrides)
            if run_dir is not None:
                config.train.run_dir = str(run_dir)
    except ConfigError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    import torch

    from oreal.train import Trainer

    if threads is not None:
        torch.set_num_threads(threads)
    trainer = Trainer(args=config, resume_from=resume, console=console)
    trainer.train()
