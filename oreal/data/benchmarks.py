"""The bundled benchmarks and training sets, each normalised to :class:`Problem` on load.

Every copied file keeps its original spelling (see ``files/SOURCES.md``); the quirks are fixed
here, in one place, so that a gold answer means the same thing whichever set it came from:
GSM8K's ``#### N``, Minerva's answer hidden in the last ``\\boxed{}``, OlympiadBench's lists of
``$...$`` strings, AIME24's zero padding and the float answers of AIME25 and AMC23.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from oreal.data.records import Problem, canonical_number
from oreal.names import unknown_name_message
from oreal.verify.extract import find_boxes
from oreal.verify.normalize import split_top_level

__all__ = [
    "BenchmarkInfo",
    "extract_last_boxed",
    "list_benchmarks",
    "load_benchmark",
    "split_multiple_answers",
]

logger = logging.getLogger(__name__)


class BenchmarkInfo(BaseModel):
    """What ``oreal data list`` shows about one bundled set; ``size`` is after ``skipped`` rows."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["eval", "train"]
    split: str
    size: int
    skipped: int = 0
    source: str
    license: str
    description: str


Row = dict[str, Any]
Normaliser = Callable[[str, int, Row], Problem | None]


@dataclass(frozen=True)
class _Entry:
    info: BenchmarkInfo
    path: str
    normalise: Normaliser


def _rows(path: str) -> Iterator[Row]:
    """Rows of a bundled file: a JSON array (``.json``) or JSON lines (``.jsonl``)."""
    resource = resources.files("oreal.data").joinpath("files")
    for part in path.split("/"):  # one part per call: Python 3.10's zip paths take only one
        resource = resource.joinpath(part)
    text = resource.read_text("utf-8")
    if path.endswith(".json"):
        yield from json.loads(text)
    else:
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)


# ---------------------------------------------------------------------------- answer helpers


def extract_last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (or ``\fbox{...}``); None if there is none.

    The verifier's own box scanner, so a gold answer is read exactly as a response would be.
    """
    boxes = find_boxes(text)
    return boxes[-1].content if boxes else None


_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}")


def split_multiple_answers(final_answer: list[str], is_multiple: bool) -> str | list[str]:
    r"""OlympiadBench ``final_answer`` -> one answer string, or the list of answers all required.

    In the file every ``final_answer`` is a one-element list; several answers are packed into
    that string as ``"$69$,$84$"``, ``"$-2,0,2$"`` or ``"1,3,5"``. The ``$`` are dropped; rows
    flagged ``is_multiple_answer`` are split on top-level commas (``"(1,2),(3,4)"`` gives two
    tuples), unless the text is prose (``"f(x)=ax+b, where b is ..."``), which stays whole.
    """
    texts = [item.replace("$", "").strip() for item in final_answer]
    if not is_multiple:
        return texts[0] if len(texts) == 1 else texts
    answers: list[str] = []
    for text in texts:
        if _PROSE.search(text):
            answers.append(text)
        else:
            answers.extend(split_top_level(text))
    return answers[0] if len(answers) == 1 else answers


# ---------------------------------------------------------------------------- normalisers


def _math500(name: str, index: int, row: Row) -> Problem:
    return Problem(
        id=f"{name}/{row['unique_id']}",
        question=row["problem"],
        answer=row["answer"].strip(),
        metadata={
            "source": name,
            "subject": row["subject"],
            "level": int(row["level"]),
            "solution": row["solution"],
            "unique_id": row["unique_id"],
        },
    )


def _math_train(name: str, index: int, row: Row) -> Problem | None:
    answer = row.get("answer")
    if answer is None or not str(answer).strip():
        return None
    level = int(row["difficulty"]) if row.get("difficulty") is not None else None
    return Problem(
        id=f"{name}/{index}",
        question=row["problem"],
        answer=str(answer).strip(),
        metadata={
            "source": name,
            "subject": row["type"],
            # Two rows carry difficulty 0.0, which is no MATH level.
            "level": level if level in range(1, 6) else None,
            "difficulty": row["difficulty"],
        },
    )


_GSM8K_NUMBER = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _gsm8k(name: str, index: int, row: Row) -> Problem:
    reasoning, _, final = row["answer"].rpartition("####")
    answer = _GSM8K_NUMBER.sub("", final.strip())
    return Problem(
        id=f"{name}/{index}",
        question=row["question"],
        answer=answer,
        metadata={"source": name, "solution": reasoning.strip(), "raw_answer": final.strip()},
    )


def _aime24(name: str, index: int, row: Row) -> Problem:
    return Problem(
        id=f"{name}/{row['id']}",
        question=row["problem"],
        answer=canonical_number(row["answer"]),
        metadata={
            "source": name,
            "raw_answer": row["answer"],
            "solution": row["solution"],
            "url": row["url"],
        },
    )


def _aime25(name: str, index: int, row: Row) -> Problem:
    return Problem(
        id=f"{name}/{row['id']}",
        question=row["question"],
        answer=canonical_number(row["answer"]),
        metadata={
            "source": name,
            "raw_answer": row["answer"],
            # The file lists AIME 2025 I (problems 1-15) then AIME 2025 II.
            "contest": "AIME 2025 I" if index < 15 else "AIME 2025 II",
            "problem_number": index % 15 + 1,
        },
    )


def _amc23(name: str, index: int, row: Row) -> Problem:
    return Problem(
        id=f"{name}/{row['id']}",
        question=row["problem"],
        answer=canonical_number(row["answer"]),
        metadata={"source": name, "raw_answer": row["answer"], "url": row["url"]},
    )


def _minerva(name: str, index: int, row: Row) -> Problem:
    answer = extract_last_boxed(row["solution"])
    if not answer:
        raise ValueError(f"{name} row {index} has no \\boxed{{}} answer in its solution")
    return Problem(
        id=f"{name}/{row['idx']}",
        question=row["problem"],
        answer=answer,
        metadata={"source": name, "subject": row["type"], "solution": row["solution"]},
    )


def _olympiadbench(name: str, index: int, row: Row) -> Problem:
    return Problem(
        id=f"{name}/{row['id']}",
        question=row["question"],
        answer=split_multiple_answers(row["final_answer"], bool(row["is_multiple_answer"])),
        metadata={
            "source": name,
            "subject": row["subfield"],
            "raw_answer": row["final_answer"],
            "is_multiple_answer": bool(row["is_multiple_answer"]),
            "answer_type": row["answer_type"],
            "unit": row["unit"],
            "solution": "\n\n".join(row["solution"]),
            "error": row["error"],
        },
    )


# ---------------------------------------------------------------------------- registry

_QWEN = "QwenLM/Qwen2.5-Math @ a45202bd"
_MAA = "problems (c) MAA"


def _entry(path: str, normalise: Normaliser, **info: Any) -> _Entry:
    return _Entry(BenchmarkInfo(**info), path, normalise)


_REGISTRY: dict[str, _Entry] = {
    entry.info.name: entry
    for entry in [
        _entry("math500/test.jsonl", _math500, name="math500", kind="eval", split="test",
               size=500, source="openai/prm800k MATH-500 split", license="MIT",
               description="MATH-500: 500 competition problems, with subject and level 1-5."),
        _entry("gsm8k/test.jsonl", _gsm8k, name="gsm8k", kind="eval", split="test", size=1319,
               source="openai/grade-school-math @ 3101c7d5", license="MIT",
               description="GSM8K test: grade-school word problems, integer answers."),
        _entry("aime24/test.jsonl", _aime24, name="aime24", kind="eval", split="test", size=30,
               source=_QWEN, license=f"MIT (eval code); {_MAA}",
               description="AIME 2024 I and II; zero-padded answers canonicalised."),
        _entry("aime25/test.jsonl", _aime25, name="aime25", kind="eval", split="test", size=30,
               source="nigelyaoj/Eval_reasoning @ a250aac8", license=f"none stated; {_MAA}",
               description="AIME 2025 I and II; float answers canonicalised."),
        _entry("amc23/test.jsonl", _amc23, name="amc23", kind="eval", split="test", size=40,
               source=_QWEN, license=f"MIT (eval code); {_MAA}",
               description="AMC 2023 (12A/12B); float answers canonicalised."),
        _entry("minerva_math/test.jsonl", _minerva, name="minerva_math", kind="eval",
               split="test", size=272, source=_QWEN, license="MIT (eval code)",
               description="Minerva OCW STEM problems; answer = last \\boxed{} of the solution."),
        _entry("olympiadbench/test.jsonl", _olympiadbench, name="olympiadbench", kind="eval",
               split="test", size=675, source=_QWEN, license="MIT (eval code)",
               description="OlympiadBench OE_TO_maths_en_COMP; multi-answer rows are lists."),
        _entry("math_train/train.json", _math_train, name="math_train", kind="train",
               split="train", size=7470, skipped=4,
               source="agentica-project/deepscaler @ 95ef74ff", license="MIT",
               description="MATH train (no MATH-500 overlap); 4 rows without answer skipped."),
        _entry("gsm8k/train.jsonl", _gsm8k, name="gsm8k_train", kind="train", split="train",
               size=7473, source="openai/grade-school-math @ 3101c7d5", license="MIT",
               description="GSM8K train: grade-school word problems, integer answers."),
    ]
}  # fmt: skip


def benchmark_names() -> list[str]:
    """Names of the bundled sets, in registry order (evaluation sets first)."""
    return list(_REGISTRY)


def list_benchmarks() -> list[BenchmarkInfo]:
    """Name, kind, split, size, source, license and description of every bundled set."""
    return [entry.info for entry in _REGISTRY.values()]


@cache
def _load(name: str) -> tuple[Problem, ...]:
    entry = _REGISTRY[name]
    problems: list[Problem] = []
    skipped = 0
    for index, row in enumerate(_rows(entry.path)):
        problem = entry.normalise(name, index, row)
        if problem is None:
            skipped += 1
        else:
            problems.append(problem)
    if skipped:
        # Cached, so this is said once per process and not on every epoch.
        logger.warning("%s: skipped %d rows without a usable answer", name, skipped)
    return tuple(problems)


def load_benchmark(name: str, limit: int | None = None) -> list[Problem]:
    """Load a bundled set by name (see :func:`list_benchmarks`), the first ``limit`` problems.

    Files are parsed once per process and cached; the returned list is a fresh copy.
    Raises ``ValueError`` naming the valid sets (and the closest one) for an unknown name.
    """
    if name not in _REGISTRY:
        raise ValueError(unknown_name_message(name, benchmark_names(), "benchmark"))
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    problems = _load(name)
    return list(problems if limit is None else problems[:limit])
