"""Importing user code named in a config: ``package.module``, ``path/to/file.py``, and
``module:attribute`` / ``file.py:attribute``.

This is the one place where a config string becomes code. Errors are ``ValueError`` with one
line that names what could not be imported and why.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["import_module", "import_object"]


def import_module(spec: str) -> ModuleType:
    """Import ``package.module`` or ``path/to/file.py`` (once; a file becomes its own module)."""
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
