"""Shipped ``oreal train`` presets (YAML), also reachable as ``configs/`` at the repo root."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent


def list_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path as given, or the shipped preset of that name ('demo', 'demo.yaml')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESET_DIR / (path.stem + ".yaml")
    if path.parent == Path(".") and preset.is_file():
        return preset
    from oreal.config_io import ConfigError

    raise ConfigError(
        f"config {name_or_path!r} is neither a file nor a preset "
        f"(presets: {', '.join(list_presets())})"
    )
