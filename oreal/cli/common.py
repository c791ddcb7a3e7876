"""What every command shares: how a user error is reported.

One line on stderr, ``error: <message>``, never hard-wrapped (users grep these messages and tests
read them whatever the terminal width), then exit code 2, no traceback. The message is printed
as plain text: rich markup in it (a ``[...]`` in a config value) is not interpreted.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

__all__ = ["default_out_dir", "fail", "stderr_console"]


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def fail(error: BaseException | str, console: Console | None = None) -> NoReturn:
    """Print ``error: <message>`` as one unwrapped line and exit with code 2."""
    console = console or stderr_console()
    message = re.sub(r"\s*\n\s*", " ", str(error)).strip()
    line = Text("error: ", style="bold red")
    line.append(message)
    console.print(line, soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def default_out_dir(model: str, root: str) -> Path:
    """``root/<model's last path part>-<local time>``: where a command writes when not told."""
    stem = Path(model.rstrip("/")).name or "model"
    return Path(root) / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
