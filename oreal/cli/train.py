"""``oreal train [CONFIG] [key.path=value ...] [--resume RUN_DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
            help="torch CPU threads (train.threads; default: torch's choice). On a CPU shared "
            "with other work, 1 is often several times faster than 2.",
            min=1,
        ),
    ] = None,
    allow_code: Annotated[
        bool,
        typer.Option(
            "--allow-code",
            help="With --resume: run the code the run's config names (reward functions, "
            "algorithm plug-ins). A run directory is data; check the code before you allow it.",
        ),
    ] = False,
) -> None:
    """Train a policy with RL from outcome rewards.

    With no config: the embedded CPU demo (configs/demo.yaml: SmolLM2-135M-Instruct, OREAL,
    addition and subtraction), evaluated before and after training. Under torchrun
    (`torchrun --nproc_per_node N -m oreal train ...`) each process is one data-parallel rank.
    """
    from oreal.cli.common import fail, stderr_console
    from oreal.config_io import ConfigError, load_config
    from oreal.configs import resolve_config_path
    from oreal.errors import UserError
    from oreal.plugins import code_from
    from oreal.train.config import OrealConfig

    console = stderr_console()
    arguments = list(arguments or [])
    source = resume / "config.yaml" if resume is not None else Path("the command line")
    try:
        with code_from(source, allowed=resume is None or allow_code):
            if arguments and "=" not in arguments[0]:
                if resume is not None:
                    raise ConfigError("--resume takes the run's own config; do not pass another")
                config_path: Path | None = resolve_config_path(arguments.pop(0))
            else:
                config_path = resume / "config.yaml" if resume is not None else None
                config_path = config_path or resolve_config_path("demo")
                if resume is not None and not config_path.is_file():
                    raise ConfigError(f"{resume} is not a run directory (no config.yaml)")
            config = load_config(OrealConfig, config_path, arguments)
            if run_dir is not None and resume is None:
                config.train.run_dir = str(run_dir)
            if threads is not None:
                config.train.threads = threads
            from oreal.train import Trainer

            trainer = Trainer(args=config, resume_from=resume, console=console)
            trainer.train()
            # Under torchrun: torch asks programs to destroy the process group before exiting,
            # and a finished rank must not abort in interpreter finalization (runtime.py).
            trainer.runtime.close()
            if trainer.runtime.distributed:
                from oreal.runtime import exit_finished_rank

                exit_finished_rank(0)
    except UserError as error:
        fail(error, console)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
