"""One entry point for every problem source: bundled sets, spec strings, files and HF datasets.

The trainer and evaluator configs name their data with a single string, so
:func:`load_problems` decides what the string means (in this order):

1. ``synthetic:TASK?...``: a procedural set (see :mod:`oreal.data.synthetic`);
2. a bundled name such as ``math500`` (see :func:`oreal.data.list_benchmarks`);
3. ``hf:ID[?config=NAME&split=NAME]``: ``datasets.load_dataset`` (a hub id, or a local
   directory or data file it understands);
4. an existing path: ``.jsonl``/``.ndjson``, ``.json``, ``.parquet``, ``.csv`` or a directory
   written by ``Dataset.save_to_disk``;
5. ``owner/name`` that is not a path: a hub id, as with ``hf:``.

Anything else is an error naming the closest bundled set. Rows become :class:`Problem` through
one field mapping; a bad row is a :class:`DataError` that says where it is and what is wrong.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from oreal.data.benchmarks import benchmark_names, load_benchmark
from oreal.data.records import DataError, Problem, canonical_answer
from oreal.data.synthetic import load_synthetic
from oreal.names import unknown_name_message

__all__ = ["load_problems", "problems_from_rows"]

logger = logging.getLogger(__name__)

_HF_INSTALL_HINT = "pip install 'oreal[hf]'"
_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

# (row, line, index): ``line`` is set for line-based files, ``index`` always.
Located = tuple[Any, int | None, int]


def load_problems(
    source: str,
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str | None = None,
    split: str = "train",
    limit: int | None = None,
    skip_invalid: bool = False,
) -> list[Problem]:
    """Load problems from any source string (see the module docstring for what it may be).

    The field names map the user's columns onto :class:`Problem`; every other column goes into
    ``metadata``. Without ``id_field`` ids are ``<file stem>/<row index>``, stable as long as
    the file is. ``split`` picks the split of a Hugging Face dataset or ``DatasetDict`` (bundled
    sets and spec strings have one split and ignore it). ``limit`` keeps the first problems.
    With ``skip_invalid`` bad rows are dropped with one warning instead of raising
    :class:`DataError`.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if source.startswith("synthetic:"):
        return load_synthetic(source, limit=limit)
    if source in benchmark_names():
        return load_benchmark(source, limit=limit)
    fields = {"question_field": question_field, "answer_field": answer_field, "id_field": id_field}
    if source.startswith("hf:"):
        return _from_hf(source.removeprefix("hf:"), split, limit, skip_invalid, fields)
    path = Path(source).expanduser()
    if path.exists():
        rows, label = _read_path(path, split)
        return problems_from_rows(rows, label, limit=limit, skip_invalid=skip_invalid, **fields)
    if source.lower().endswith(_FILE_SUFFIXES):
        raise ValueError(f"file not found: {source}")
    if _HUB_ID.fullmatch(source.partition("?")[0]):
        return _from_hf(source, split, limit, skip_invalid, fields)
    raise ValueError(
        unknown_name_message(source, benchmark_names(), "data source")
        + " Other sources: a .jsonl/.json/.parquet/.csv file, a saved dataset directory,"
        " hf:ID, or synthetic:arithmetic?n=64 (see docs/data.md)."
    )


def problems_from_rows(
    rows: Iterable[Located],
    source: str,
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str | None = None,
    limit: int | None = None,
    skip_invalid: bool = False,
    id_prefix: str | None = None,
) -> list[Problem]:
    """Map located rows ``(row, line, index)`` onto problems; the shared core of every loader.

    ``source`` names the data in error messages and ``metadata["source"]``; ids without an
    ``id_field`` are ``<id_prefix>/<row index>`` (default prefix: the file stem).
    """
    prefix = id_prefix or Path(source).stem or source
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    skipped: list[DataError] = []
    for row, line, index in rows:
        if limit is not None and len(problems) >= limit:
            break
        where = f"line {line}" if line is not None else f"row {index}"
        try:
            problem = _to_problem(
                row, source, prefix, index, question_field, answer_field, id_field
            )
            if problem.id in first_seen:
                reason = f"duplicate id {problem.id!r} (first seen at {first_seen[problem.id]})"
                raise ValueError(reason)
        except ValueError as error:
            failure = DataError(source, str(error), line=line, row=None if line else index)
            if not skip_invalid:
                raise failure from None
            skipped.append(failure)
            continue
        first_seen[problem.id] = where
        problems.append(problem)
    if skipped:
        logger.warning("%s: skipped %d invalid rows; first: %s", source, len(skipped), skipped[0])
    return problems


def _to_problem(
    row: Any,
    source: str,
    prefix: str,
    index: int,
    question_field: str,
    answer_field: str,
    id_field: str | None,
) -> Problem:
    """One row -> Problem; raises ValueError with a reason the caller locates."""
    if not isinstance(row, dict):
        raise ValueError(f"expected an object with fields, got {type(row).__name__}")

    def field(name: str, option: str) -> Any:
        if name not in row:
            have = ", ".join(map(repr, row)) or "none"
            flag = "--" + option.replace("_", "-")
            raise ValueError(
                f"missing field {name!r} (fields: {have}); name the column with "
                f"data.{option} (oreal train), {flag} (oreal eval, oreal data show) or "
                f"{option}= (Python)"
            )
        return row[name]

    question = field(question_field, "question_field")
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, got {type(question).__name__}")
    if not question.strip():
        raise ValueError("empty question")
    answer = canonical_answer(field(answer_field, "answer_field"))
    if id_field is None:
        problem_id = f"{prefix}/{index}"
    else:
        raw_id = field(id_field, "id_field")
        if raw_id is None or isinstance(raw_id, (dict, list)) or not str(raw_id).strip():
            raise ValueError(f"bad id {raw_id!r}")
        problem_id = str(raw_id)
    used = {question_field, answer_field, id_field}
    metadata = {"source": source, **{k: v for k, v in row.items() if k not in used}}
    return Problem(id=problem_id, question=question, answer=answer, metadata=metadata)


# ---------------------------------------------------------------------------- readers


def _read_path(path: Path, split: str) -> tuple[Iterator[Located], str]:
    label = str(path)
    if path.is_dir():
        return _saved_dataset_rows(path, split), label
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(path), label
    if suffix == ".json":
        return _json_rows(path), label
    if suffix == ".parquet":
        return _parquet_rows(path), label
    if suffix == ".csv":
        return _csv_rows(path), label
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {_FILE_SUFFIXES}")


def _jsonl_rows(path: Path, text: str | None = None) -> Iterator[Located]:
    lines = (text if text is not None else path.read_text("utf-8")).splitlines()
    index = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            reason = f"bad JSON: {error.msg} (column {error.colno})"
            raise DataError(str(path), reason, line=number) from None
        yield row, number, index
        index += 1


def _json_rows(path: Path) -> Iterator[Located]:
    text = path.read_text("utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several documents: the file is really JSON lines
            yield from _jsonl_rows(path, text)
            return
        reason = f"bad JSON: {error.msg} (column {error.colno})"
        raise DataError(str(path), reason, line=error.lineno) from None
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        key = "data" if "data" in lists else lists[0] if len(lists) == 1 else None
        if key is None:
            reason = "expected a JSON array of rows or an object with a 'data' list"
            raise DataError(str(path), reason)
        document = document[key]
    if not isinstance(document, list):
        raise DataError(str(path), f"expected a JSON array of rows, got {type(document).__name__}")
    for index, row in enumerate(document):
        yield row, None, index


def _csv_rows(path: Path) -> Iterator[Located]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for index, row in enumerate(reader):
            yield dict(row), reader.line_num, index


def _parquet_rows(path: Path) -> Iterator[Located]:
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise ImportError(f"reading Parquet needs pyarrow: {_HF_INSTALL_HINT}") from error
    for index, row in enumerate(parquet.read_table(path).to_pylist()):
        yield row, None, index


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(f"Hugging Face datasets are not installed: {_HF_INSTALL_HINT}") from error
    return datasets


def _pick_split(data: Any, split: str, label: str) -> Any:
    """A ``Dataset`` from a ``Dataset`` or ``DatasetDict``, naming the splits on a miss."""
    if isinstance(data, dict):  # DatasetDict is a dict of splits
        if split not in data:
            raise ValueError(f"{label}: no split {split!r}; splits: {', '.join(data.keys())}")
        return data[split]
    return data


def _dataset_rows(dataset: Any) -> Iterator[Located]:
    for index, row in enumerate(dataset):
        yield row, None, index


def _saved_dataset_rows(path: Path, split: str) -> Iterator[Located]:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / marker).exists() for marker in markers):
        raise ValueError(
            f"{path} is a directory but not a saved dataset (Dataset.save_to_disk); "
            f"for a directory of data files use hf:{path}"
        )
    datasets = _import_datasets()
    yield from _dataset_rows(_pick_split(datasets.load_from_disk(str(path)), split, str(path)))


def _from_hf(
    spec: str, split: str, limit: int | None, skip_invalid: bool, fields: dict[str, Any]
) -> list[Problem]:
    """``ID[?config=NAME&split=NAME]`` through ``datasets.load_dataset`` (hub or local)."""
    name, _, query = spec.partition("?")
    config: str | None = None
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key == "config":
            config = value
        elif key == "split":
            split = value
        else:
            raise ValueError(f"hf:{spec}: unknown parameter {key!r}; use config=... or split=...")
    datasets = _import_datasets()
    local = Path(name).expanduser()
    if local.is_file():
        builder = {".jsonl": "json", ".ndjson": "json"}.get(local.suffix, local.suffix[1:])
        data = datasets.load_dataset(builder, data_files=str(local), split="train")
    else:
        try:
            data = datasets.load_dataset(name, config, split=split)
        except Exception as error:  # offline, unknown id, unknown config: all say the same
            raise ValueError(f"cannot load dataset {name!r} (split {split!r}): {error}") from error
    data = _pick_split(data, split, name)
    if limit is not None and not skip_invalid:
        data = data.select(range(min(limit, len(data))))
    return problems_from_rows(
        _dataset_rows(data),
        f"{name}[{split}]",
        limit=limit,
        skip_invalid=skip_invalid,
        id_prefix=f"{name}/{split}",
        **fields,
    )
