"""Loading a pydantic config from YAML with dotted command-line overrides.

``load_config(Schema, "configs/demo.yaml", ["algorithm.name=grpo", "optim.lr=2e-6"])`` reads the
YAML file, applies each override (its value parsed as a YAML scalar, so ``2e-6`` is a float and
``[a, b]`` a list), and validates the result. Every problem becomes a ``ConfigError`` whose
message names the offending key and, for a misspelt key, the closest valid one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from oreal.errors import UserError
from oreal.names import closest_name

SchemaT = TypeVar("SchemaT", bound=BaseModel)


class ConfigError(UserError):
    """A config file or override that cannot be turned into a valid config."""


def parse_scalar(text: str) -> Any:
    """Parse an override value as YAML (``1e-5`` -> float, ``true`` -> bool, ``[1, 2]`` -> list).

    PyYAML's YAML 1.1 resolver reads ``1e-5`` (no dot) as a string, which is never what a user
    typing a learning rate means, so numbers are tried first.
    """
    for number_type in (int, float):
        try:
            return number_type(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse value {text!r}: {error}") from error


def _field_names(schema: type[BaseModel], path: Sequence[str]) -> list[str] | None:
    """The valid keys at ``path`` inside ``schema``, or None when path leaves the schema."""
    model: Any = schema
    for key in path:
        field = model.model_fields.get(key) if isinstance(model, type) else None
        if field is None:
            return None
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return None


def closest_key_hint(schema: type[BaseModel], dotted_key: str) -> str:
    """' (did you mean ...?)' for a misspelt dotted key, or '' when nothing is close."""
    *parents, leaf = dotted_key.split(".")
    valid = _field_names(schema, parents)
    if not valid:
        return ""
    match = closest_name(leaf, valid)
    if match is not None:
        return f" (did you mean '{'.'.join([*parents, match])}'?)"
    return f" (valid keys here: {', '.join(valid)})"


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` inside the nested dict ``data`` (in place)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.path=value")
    dotted_key, _, raw_value = override.partition("=")
    dotted_key = dotted_key.strip()
    if not dotted_key or any(not part for part in dotted_key.split(".")):
        raise ConfigError(f"override {override!r} has an empty key")
    node = data
    *parents, leaf = dotted_key.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: '{key}' is a value, not a section")
        node = child
    node[leaf] = parse_scalar(raw_value.strip())


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping at the top level")
    return data


def format_validation_error(schema: type[BaseModel], error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        dotted = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{dotted}'{closest_key_hint(schema, dotted)}")
        elif item["type"] == "value_error":  # a validator's own message names key and value
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{dotted}: {message}" if dotted else message)
        else:
            lines.append(f"{dotted}: {item['msg']} (got {item.get('input')!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


def load_config(
    schema: type[SchemaT],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> SchemaT:
    """Build a validated ``schema`` from an optional YAML file plus dotted overrides."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = read_yaml(path)
    for override in overrides:
        apply_override(data, override)
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(schema, error)) from None


def dump_config(config: BaseModel | dict[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (the run directory's record of what ran)."""
    from oreal.atomic import atomic_write_text

    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
