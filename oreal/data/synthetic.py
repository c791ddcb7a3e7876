"""Seeded procedural problems with exact integer answers, for demos, smoke runs and tests.

A tiny model can learn 2-digit addition in minutes on a CPU, which makes these the quickest way
to watch an RL run improve; the difficulty knobs (digits, number of terms, operations, word
problem steps) let the same generator feed a larger model. Everything is drawn from one
``random.Random(seed)``: Python's Mersenne Twister and its integer sampling are specified, so the
same seed gives the same problems on every platform and Python version we support.

A dataset is named by a spec string (what the trainer config holds)::

    synthetic:arithmetic?n=64&digits=2&ops=add,sub&seed=0
    synthetic:word_problems?n=32&steps=3&digits=1-2&seed=7
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from oreal.data.records import Problem
from oreal.names import unknown_name_message

__all__ = [
    "ARITHMETIC_OPS",
    "SPLITS",
    "WORD_PROBLEM_OPS",
    "in_split",
    "load_synthetic",
    "make_arithmetic",
    "make_word_problems",
    "parse_synthetic_spec",
]

ARITHMETIC_OPS = ("add", "sub", "mul", "div")
WORD_PROBLEM_OPS = ("add", "sub", "mul", "div")
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_MAX_TRIES_PER_PROBLEM = 1000

Digits = int | tuple[int, int]


def _digit_range(digits: Digits) -> tuple[int, int]:
    low, high = (digits, digits) if isinstance(digits, int) else digits
    if not 1 <= low <= high:
        raise ValueError(f"digits must be >= 1 (or a range lo-hi with 1 <= lo <= hi), got {digits}")
    return low, high


def _number(rng: random.Random, digits: tuple[int, int]) -> int:
    width = rng.randint(*digits)
    return rng.randint(10 ** (width - 1), 10**width - 1)


def _check_ops(ops: Sequence[str], valid: Sequence[str]) -> tuple[str, ...]:
    if not ops:
        raise ValueError("ops must name at least one operation")
    for op in ops:
        if op not in valid:
            raise ValueError(unknown_name_message(op, list(valid), "operation"))
    return tuple(ops)


def _evaluate(numbers: list[int], ops: list[str]) -> int:
    """Exact value of ``n0 op0 n1 op1 ...`` with * before + and - (the reading a person uses)."""
    terms = [numbers[0]]
    signs: list[str] = []
    for op, number in zip(ops, numbers[1:], strict=True):
        if op == "mul":
            terms[-1] *= number
        elif op == "div":
            terms[-1] //= number  # only generated for two terms with exact quotients
        else:
            signs.append(op)
            terms.append(number)
    value = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        value = value + term if sign == "add" else value - term
    return value


def _fingerprint(task: str, params: dict[str, Any]) -> str:
    """A short stable hash of the generator settings, so ids from different specs never clash."""
    text = task + "?" + "&".join(f"{key}={params[key]}" for key in sorted(params))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


SPLITS = ("all", "train", "test")


def in_split(question: str, split: str) -> bool:
    """Whether a question belongs to ``split``: a fixed 1/8 of all questions is ``test``.

    The partition depends on the question text only, so a ``split=train`` and a ``split=test``
    set never share a question whatever their seeds and sizes (two seeds of the same settings
    otherwise overlap: 2-digit add/sub has only about 12,000 distinct questions).
    """
    if split == "all":
        return True
    is_test = hashlib.sha256(question.encode()).digest()[0] % 8 == 0
    return is_test == (split == "test")


def _generate(
    n: int,
    unique: bool,
    split: str,
    draw: Callable[[], tuple[str, int, dict[str, Any]] | None],
    what: str,
) -> list[tuple[str, int, dict[str, Any]]]:
    """Call ``draw`` until ``n`` problems (distinct questions when ``unique``) are collected."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in SPLITS:
        raise ValueError(unknown_name_message(split, list(SPLITS), "synthetic split"))
    found: list[tuple[str, int, dict[str, Any]]] = []
    seen: set[str] = set()
    tries = 0
    while len(found) < n:
        tries += 1
        if tries > _MAX_TRIES_PER_PROBLEM * max(n, 1):
            raise ValueError(
                f"could only generate {len(found)} of {n} {what} with these settings; "
                "use more digits or terms, allow negative results, or unique=false"
            )
        item = draw()
        if item is None or (unique and item[0] in seen) or not in_split(item[0], split):
            continue
        seen.add(item[0])
        found.append(item)
    return found


def make_arithmetic(
    n: int,
    *,
    seed: int,
    ops: Sequence[str] = ("add", "sub"),
    digits: Digits = 2,
    terms: int = 2,
    allow_negative: bool = False,
    unique: bool = True,
    split: str = "all",
) -> list[Problem]:
    """``n`` questions like "What is 47 + 38?" with exact integer answers.

    ``ops`` are drawn per operator from add, sub, mul and div; ``digits`` is the operand width
    (an int, or an inclusive ``(lo, hi)`` range); ``terms`` operands per question, evaluated with
    the usual precedence. ``div`` builds the dividend as divisor * quotient, so it is always
    exact, and needs ``terms=2``. Without ``allow_negative`` questions whose value would be
    negative are redrawn (for two terms the operands of a subtraction are swapped instead).
    ``unique`` keeps the questions distinct, which matters for evaluation sets; ``split``
    ("all", "train" or "test") keeps train and evaluation sets disjoint (:func:`in_split`).
    """
    ops = _check_ops(ops, ARITHMETIC_OPS)
    width = _digit_range(digits)
    if terms < 2:
        raise ValueError(f"terms must be >= 2, got {terms}")
    if "div" in ops and terms != 2:
        raise ValueError("the 'div' operation needs terms=2 (exact quotients in longer chains)")
    rng = random.Random(seed)

    def draw() -> tuple[str, int, dict[str, Any]] | None:
        chosen = [rng.choice(ops) for _ in range(terms - 1)]
        numbers = [_number(rng, width) for _ in range(terms)]
        if chosen == ["div"]:
            numbers = [numbers[0] * numbers[1], numbers[1]]
        elif chosen == ["sub"] and not allow_negative and numbers[0] < numbers[1]:
            numbers.reverse()
        value = _evaluate(numbers, chosen)
        if value < 0 and not allow_negative:
            return None
        parts = [str(numbers[0])]
        for op, number in zip(chosen, numbers[1:], strict=True):
            parts += [_SYMBOL[op], str(number)]
        expression = " ".join(parts)
        return f"What is {expression}?", value, {"expression": expression}

    params = {
        "seed": seed,
        "ops": ",".join(ops),
        "digits": _spell_digits(width),
        "terms": terms,
        "allow_negative": allow_negative,
        "unique": unique,
        "split": split,
    }
    items = _generate(n, unique, split, draw, "arithmetic problems")
    return _problems(
        "arithmetic", params, items, solution=lambda meta, value: f"{meta['expression']} = {value}"
    )


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_NAMES = _words("Mia Noah Ava Liam Zoe Omar Priya Kenji Lena Mateo Sara Tom Amara Yuki Ivan Chloe")
_ITEMS = _words("marbles stickers apples books coins stamps cards pencils shells beads cookies")
_CONTAINERS = (("bag", "bags"), ("box", "boxes"), ("pack", "packs"), ("jar", "jars"))


def make_word_problems(
    n: int,
    *,
    seed: int,
    steps: int = 2,
    digits: Digits = 2,
    ops: Sequence[str] = ("add", "sub", "mul"),
    unique: bool = True,
    split: str = "all",
) -> list[Problem]:
    """``n`` short stories of ``steps`` events on one count, each with an exact integer answer.

    "Mia has 23 marbles. Mia buys 15 more marbles. Then Mia gives 9 marbles to a friend. How
    many marbles does Mia have now?" Events: ``add`` (gets more), ``sub`` (gives some away,
    never more than there are), ``mul`` (buys k containers of m each, or the count doubles or
    triples), ``div`` (splits evenly into k containers and keeps one; only used when the count
    divides evenly, otherwise another requested event is used). ``digits`` sizes the starting
    count and the amounts; ``steps`` is the main difficulty knob. A step-by-step solution is
    kept in ``metadata["solution"]``. ``unique`` and ``split`` as in :func:`make_arithmetic`.
    """
    ops = _check_ops(ops, WORD_PROBLEM_OPS)
    width = _digit_range(digits)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    rng = random.Random(seed)

    def draw() -> tuple[str, int, dict[str, Any]]:
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        count = _number(rng, width)
        sentences = [f"{name} has {count} {item}."]
        work: list[str] = []
        for step in range(steps):
            count, sentence, line = _event(rng, ops, count, name, item, width)
            if step > 0:
                starts_with_name = sentence.startswith(name)
                sentence = "Then " + (
                    sentence if starts_with_name else sentence[0].lower() + sentence[1:]
                )
            sentences.append(sentence)
            work.append(line)
        sentences.append(f"How many {item} does {name} have now?")
        return " ".join(sentences), count, {"solution_steps": work}

    params = {
        "seed": seed,
        "steps": steps,
        "digits": _spell_digits(width),
        "ops": ",".join(ops),
        "unique": unique,
        "split": split,
    }
    items = _generate(n, unique, split, draw, "word problems")
    return _problems(
        "word_problems",
        params,
        items,
        solution=lambda meta, value: (
            "\n".join(meta.pop("solution_steps")) + f"\nThe answer is {value}."
        ),
    )


def _event(
    rng: random.Random,
    ops: tuple[str, ...],
    count: int,
    name: str,
    item: str,
    width: tuple[int, int],
) -> tuple[int, str, str]:
    """One story event: the new count, its sentence, and the line of worked arithmetic."""
    feasible = [
        op
        for op in ops
        if (op != "sub" or count > 0)
        and (op != "div" or (count > 0 and any(count % k == 0 for k in range(2, 10))))
    ]
    op = rng.choice(feasible or ["add"])
    if op == "add":
        amount = _number(rng, width)
        verb = rng.choice(("buys", "finds", "gets"))
        return (
            count + amount,
            f"{name} {verb} {amount} more {item}.",
            f"{count} + {amount} = {count + amount}",
        )
    if op == "sub":
        low = 10 ** (width[0] - 1)
        high = min(count, 10 ** width[1] - 1)
        amount = rng.randint(low, high) if count >= low else rng.randint(1, count)
        phrase = rng.choice(
            (
                f"gives {amount} {item} to a friend",
                f"loses {amount} {item}",
                f"uses {amount} {item}",
            )
        )
        return count - amount, f"{name} {phrase}.", f"{count} - {amount} = {count - amount}"
    singular, plural = rng.choice(_CONTAINERS)
    if op == "mul":
        if rng.random() < 0.5:
            factor = rng.choice((2, 3))
            word = "doubles" if factor == 2 else "triples"
            return (
                count * factor,
                f"The number of {item} {name} has {word}.",
                f"{count} * {factor} = {count * factor}",
            )
        k, each = rng.randint(2, 9), _number(rng, width)
        total = k * each
        return (
            count + total,
            f"{name} buys {k} {plural} with {each} {item} in each.",
            f"{k} * {each} = {total}; {count} + {total} = {count + total}",
        )
    k = rng.choice([k for k in range(2, 10) if count % k == 0])
    sentence = f"{name} splits the {item} equally into {k} {plural} and keeps one {singular}."
    return count // k, sentence, f"{count} / {k} = {count // k}"


def _spell_digits(width: tuple[int, int]) -> str:
    return str(width[0]) if width[0] == width[1] else f"{width[0]}-{width[1]}"


def _problems(
    task: str,
    params: dict[str, Any],
    items: list[tuple[str, int, dict[str, Any]]],
    solution: Callable[[dict[str, Any], int], str],
) -> list[Problem]:
    # ``n`` is deliberately not part of either: problem i is the same whatever n is.
    tag = _fingerprint(task, params)
    query = "&".join(
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in params.items()
    )
    spec = f"synthetic:{task}?{query}"
    problems = []
    for index, (question, value, meta) in enumerate(items):
        meta = dict(meta)
        text = solution(meta, value)
        problems.append(
            Problem(
                id=f"synthetic/{task}/{tag}/{index}",
                question=question,
                answer=str(value),
                metadata={"source": spec, "task": task, "solution": text, **meta},
            )
        )
    return problems


# ---------------------------------------------------------------------------- spec strings

_COMMON_KEYS = {"n": "int", "seed": "int", "ops": "list", "digits": "digits", "unique": "bool",
                "split": "str"}  # fmt: skip
_TASKS: dict[str, tuple[Callable[..., list[Problem]], dict[str, str]]] = {
    "arithmetic": (make_arithmetic, {**_COMMON_KEYS, "terms": "int", "allow_negative": "bool"}),
    "word_problems": (make_word_problems, {**_COMMON_KEYS, "steps": "int"}),
}
DEFAULT_N = 100
_EXPECTED = {"str": "text", "int": "an integer", "list": "a list",
             "digits": "N or LO-HI", "bool": "true or false"}  # fmt: skip


def _convert(key: str, kind: str, text: str) -> Any:
    try:
        if kind == "str":
            return text
        if kind == "int":
            return int(text)
        if kind == "list":
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if kind == "digits":
            low, sep, high = text.partition("-")
            return (int(low), int(high)) if sep else int(low)
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError
    except ValueError:
        expected = _EXPECTED[kind]
        raise ValueError(f"synthetic spec: {key}={text!r} is not {expected}") from None


def parse_synthetic_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"synthetic:arithmetic?n=8&ops=add,mul"`` -> ``("arithmetic", {"n": 8, "ops": (...)})``.

    Grammar: ``synthetic:TASK[?KEY=VALUE(&KEY=VALUE)*]``; values are integers, comma lists
    (``ops``), a width or range ``LO-HI`` (``digits``), booleans or a split name. Unknown tasks
    and keys raise ``ValueError`` naming the valid ones; ``n`` defaults to 100, ``seed`` to 0.
    """
    body = spec.removeprefix("synthetic:")
    task, _, query = body.partition("?")
    task = task.strip()
    if task not in _TASKS:
        raise ValueError(unknown_name_message(task, list(_TASKS), "synthetic task"))
    kinds = _TASKS[task][1]
    params: dict[str, Any] = {"n": DEFAULT_N, "seed": 0}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if key not in kinds:
            raise ValueError(unknown_name_message(key, list(kinds), f"{task} parameter"))
        if not sep:
            raise ValueError(f"synthetic spec: parameter {key!r} needs a value ({key}=...)")
        params[key] = _convert(key, kinds[key], value.strip())
    return task, params


def load_synthetic(spec: str, limit: int | None = None) -> list[Problem]:
    """Generate the problems a spec string names (``limit`` caps ``n``)."""
    task, params = parse_synthetic_spec(spec)
    if limit is not None:
        params["n"] = min(params["n"], limit)
    make = _TASKS[task][0]
    return make(params.pop("n"), **params)
