"""Importing user code named in a config: ``package.module``, ``path/to/file.py``, and
``module:attribute`` / ``file.py:attribute``.

This is the one place where a config string becomes code. Errors are ``ValueError`` with one
line that names what could not be imported and why.

A run directory is data: its ``config.yaml`` may name code (reward functions, algorithm
plug-ins), and a run directory someone sends you must not run it behind your back. Commands that
read a run's config (``oreal train --resume``) do so inside :func:`code_from`, and an import then
fails with :class:`CodeNotAllowed` unless the user allowed it (``--allow-code``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import ModuleType
from typing import Any

from oreal.errors import UserError

__all__ = ["CodeNotAllowed", "code_from", "import_module", "import_object"]

#: Where the config being used came from, when that is a place whose code is not trusted.
_UNTRUSTED_SOURCE: ContextVar[str | None] = ContextVar("untrusted_source", default=None)


class CodeNotAllowed(UserError):
    """A config from a run directory names code, and running it was not allowed."""


@contextmanager
def code_from(source: str | Path, *, allowed: bool) -> Iterator[None]:
    """Imports in this block come from ``source``'s config: refused unless ``allowed``."""
    token = _UNTRUSTED_SOURCE.set(None if allowed else str(source))
    try:
        yield
    finally:
        _UNTRUSTED_SOURCE.reset(token)


def import_module(spec: str) -> ModuleType:
    """Import ``package.module`` or ``path/to/file.py`` (once; a file becomes its own module)."""
    source = _UNTRUSTED_SOURCE.get()
    if source is not None:
        raise CodeNotAllowed(
            f"{source} names code to run ({spec}); if you trust it, pass --allow-code "
            "(docs/training.md: resume and code)"
        )
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"file not found: {spec}")
        name = f"oreal_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot import {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ValueError(f"{spec} failed to import: {type(error).__name__}: {error}") from error
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as error:
        raise ValueError(f"cannot import module {spec!r}: {error}") from error
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        raise ValueError(f"module {spec!r} failed to import: {reason}") from error


def import_object(spec: str) -> Any:
    """The attribute named by ``module:attribute`` or ``path/to/file.py:attribute``."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute or module_name.endswith(":"):
        raise ValueError(f"expected 'module:function' or 'file.py:function', got {spec!r}")
    module = import_module(module_name)
    if not hasattr(module, attribute):
        raise ValueError(f"{module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)
