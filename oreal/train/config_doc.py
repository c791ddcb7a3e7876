"""The configuration reference (``docs/config.md``), generated from the schema so it cannot drift.

    python -m oreal.train.config_doc > docs/config.md

A test regenerates it and compares, so a field added to the schema without regenerating the
page fails CI.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from oreal.algorithms import ALGORITHMS
from oreal.train.config import OrealConfig

HEADER = """# Configuration reference

Generated from the schema by `python -m oreal.train.config_doc > docs/config.md`; do not edit by
hand. Every key can be set in a YAML file or on the command line as `section.key=value`
(`oreal train configs/demo.yaml optim.lr=2e-6`); an unknown key is an error that names the
closest valid one. Presets: `oreal train --help`.
"""


def _type(field: FieldInfo) -> str:
    annotation = field.annotation
    if "Literal" in str(annotation):
        return " \\| ".join(f"`{value}`" for value in _literals(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None").replace("|", "\\|")


def _literals(annotation: Any) -> list[Any]:
    values: list[Any] = []
    for arg in get_args(annotation) or ():
        values.extend(_literals(arg) if get_args(arg) else [arg])
    return [v for v in values if v is not type(None)]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return "`" + json.dumps(value) + "`"


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((f"{prefix}{name}", annotation))
            continue
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{prefix}{name}` | {_type(field)} | {_default(field)} | {meaning} |")
    lines = [*rows, ""]
    for path, sub in nested:
        lines += [f"`{path}`: {(sub.__doc__ or '').strip().splitlines()[0]}", ""]
        lines += _table(sub, f"{path}.")
    return lines


def config_reference() -> str:
    """The whole page as Markdown."""
    lines = [HEADER]
    for name, field in OrealConfig.model_fields.items():
        section = field.annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        lines += [f"## `{name}`", ""]
        doc = (section.__doc__ or "").strip()
        if doc:
            lines += [" ".join(doc.split("\n\n")[0].split()), ""]
        lines += _table(section, f"{name}.")
    lines += [
        "## `algorithm.params`, per algorithm",
        "",
        "Validated against the algorithm named by `algorithm.name`; each default is the",
        "method's paper or its authors' code (evidence: [algorithms.md](algorithms.md)).",
        "",
    ]
    shipped = {n: m for n, m in ALGORITHMS.items() if m.__module__.startswith("oreal.")}
    for name, model in shipped.items():  # plug-ins registered in this process are not shipped
        lines += [f"### `{name}` ({model.paper})", ""]
        lines += _table(model, "")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
