"""The one problem record every part of oreal passes around, and the answer canonicalisation.

Every source (bundled benchmark, user file, Hugging Face dataset, synthetic generator) is turned
into :class:`Problem` at the boundary, so rollout, reward and evaluation code never has to know
where a question came from or how its answer was spelled in the original file.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from oreal.errors import UserError

__all__ = ["DataError", "Problem", "canonical_answer", "canonical_number"]


class DataError(UserError):
    """A data file or dataset row that cannot become a :class:`Problem`.

    The message names the source and the position so that the user can open the file at the bad
    record: ``line`` is the 1-based line of a JSON lines or CSV file (what an editor shows),
    ``row`` the 0-based index into a JSON array, Parquet table or dataset (what ``data[row]``
    takes). Both are also kept as attributes, with ``reason``, for programs that report
    differently.
    """

    def __init__(
        self, source: str, reason: str, *, line: int | None = None, row: int | None = None
    ) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        self.row = row
        where = source
        if line is not None:
            where += f", line {line}"
        elif row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {reason}")


class Problem(BaseModel):
    """One question with its gold answer.

    ``answer`` is a plain string for the usual single answer. A list means "all of these must be
    given" (OlympiadBench rows with several answers); a one-element list is stored as its string
    so that there is exactly one spelling of a single answer. ``metadata`` holds whatever the
    source knows besides (``source``, ``subject``, ``level``, ``solution``, ``unit``,
    ``raw_answer``, ...); nothing in training depends on it, so its keys are free-form.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    question: str
    answer: str | list[str]
    metadata: dict[str, Any] = {}

    @field_validator("id", "question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("answer", mode="before")
    @classmethod
    def _one_spelling(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError("an answer list must not be empty")
            if len(value) == 1:
                return value[0]
            return list(value)
        return value

    @field_validator("answer")
    @classmethod
    def _answer_not_blank(cls, value: str | list[str]) -> str | list[str]:
        for item in [value] if isinstance(value, str) else value:
            if not item.strip():
                raise ValueError("answers must not be empty")
        return value

    @property
    def answers(self) -> list[str]:
        """The gold answer(s) as a list, whatever the stored form; handy for ``all(...)`` checks."""
        return [self.answer] if isinstance(self.answer, str) else list(self.answer)

    def __hash__(self) -> int:
        # pydantic's frozen hash would hash ``metadata`` (a dict) and fail; id and question are
        # enough, and equal problems still hash equal.
        return hash((self.id, self.question))


_INTEGER_STRING = re.compile(r"[+-]?\d+")
_DECIMAL_STRING = re.compile(r"[+-]?(\d+\.\d*|\.\d+)")


def canonical_number(value: int | float | str) -> str:
    """Spell a number the one way a verifier and a human expect: ``70.0`` -> ``"70"``.

    Integral values lose their fraction and leading zeros (``"025"`` -> ``"25"``), other floats
    keep Python's shortest round-trip digits without an exponent (``1e-05`` -> ``"0.00001"``).
    Strings that are not plain decimal numbers are returned stripped but otherwise untouched, so
    LaTeX answers pass through. ``bool``, NaN and infinities raise ``ValueError``: they are never
    a sensible gold answer and usually mean a wrong column was mapped.
    """
    if isinstance(value, bool):
        raise ValueError(f"a boolean ({value}) is not a valid answer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a valid answer")
        if value.is_integer():
            return str(int(value))
        return _plain_decimal(Decimal(repr(value)))
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_STRING.fullmatch(text):
            return str(int(text))
        if _DECIMAL_STRING.fullmatch(text):
            number = Decimal(text)
            if number == number.to_integral_value():
                return str(int(number))
            return _plain_decimal(number)
        return text
    raise ValueError(f"cannot turn {type(value).__name__} into an answer")


def _plain_decimal(number: Decimal) -> str:
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "+0") else text


def canonical_answer(value: Any) -> str | list[str]:
    """Turn a raw answer cell (str, int, float, or a list of them) into a ``Problem.answer``.

    Strings are only stripped (``"025"`` stays ``"025"``: leading zeros can matter in user data;
    the AIME loaders canonicalise on purpose). Numbers go through :func:`canonical_number`.
    Raises ``ValueError`` with a short reason for anything else, for the caller to wrap in a
    :class:`DataError` that says where the row is.
    """
    if value is None:
        raise ValueError("answer is missing (null)")
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("answer is empty")
        return value.strip()
    if isinstance(value, (int, float)):
        return canonical_number(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("answer list is empty")
        items = [canonical_answer(item) for item in value]
        if any(isinstance(item, list) for item in items):
            raise ValueError("nested answer lists are not supported")
        return items[0] if len(items) == 1 else items  # type: ignore[return-value]
    raise ValueError(
        f"answer has type {type(value).__name__}; expected a string, a number or a list of them"
    )
