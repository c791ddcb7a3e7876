"""Fuzzing: every verifier entry point returns a verdict for any string, however hostile.

A seeded generator (reproducible, no extra dependency) glues together the pieces that broke or
could break a verifier: deep nesting (1,000 nested boxes raised RecursionError), unbalanced and
escaped braces, lone surrogates, NUL and other control characters, non-ASCII digits, huge
numbers, exponent towers and factorials, math delimiters, think tags and answer phrases.
"""

from __future__ import annotations

import random

import pytest

from oreal.verify import REASONS, Verdict, Verifier, extract_answer, verify_batch
from oreal.verify.rules import Job, prepare

PIECES = [
    r"\boxed{",
    r"\boxed ",
    r"\fbox{",
    "{",
    "}",
    "\\{",
    "\\}",
    "\\",
    "\\\\",
    "$",
    "$$",
    r"\(",
    r"\)",
    r"\[",
    r"\]",
    "5",
    "0,111",
    "1,000",
    ".4",
    "1e-3",
    "99999999999999999999",
    "^",
    "^{",
    "!",
    r"\frac",
    r"\sqrt",
    r"\text{",
    r"\exp(",
    "e^{10^{6}}",
    "9^{9^{9^{9}}}",
    "(",
    ")",
    "[",
    "]",
    "%",
    r"\%",
    "=",
    r"\approx",
    " and ",
    " or ",
    " not ",
    "The answer is ",
    "Final Answer: ",
    "**Final Answer**",
    "#### ",
    "<think>",
    "</think>",
    "\n",
    " ",
    "\udcff",
    "\ud800",
    "\x00",
    "\u200b",
    "\u202e",
    "٣",
    "５",
    "²",
    "😀",
    "é",
    "\t",
]


def hostile_strings(count: int, seed: int, max_pieces: int = 40) -> list[str]:
    rng = random.Random(seed)
    out = [
        r"\boxed{" * 1000 + "5" + "}" * 1000,  # issue #13: RecursionError
        r"\boxed{" * 5000,  # never closed
        "{" * 20_000 + r"\boxed{5}",
        "$" * 10_000,
        "\\" * 10_001,
        "\udcff" * 100,
        r"\boxed{\boxed{\boxed{" + "\udcff" + "}}}",
    ]
    while len(out) < count:
        pieces = [rng.choice(PIECES) for _ in range(rng.randint(1, max_pieces))]
        if rng.random() < 0.1:  # long repeats of one piece
            pieces = [rng.choice(PIECES) * rng.randint(100, 3000)]
        out.append("".join(pieces))
    return out


RESPONSES = hostile_strings(3_000, seed=0)
GOLDS = hostile_strings(300, seed=1, max_pieces=6)


def _check(verdicts: list[Verdict], n: int) -> None:
    assert len(verdicts) == n
    for verdict in verdicts:
        assert isinstance(verdict, Verdict)
        assert verdict.reason in REASONS
        assert verdict.correct is (verdict.reason == "match")


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_rule_stage_and_extraction_never_raise(mode: str) -> None:
    for i, response in enumerate(RESPONSES):
        extract_answer(response, mode)
        staged = prepare(GOLDS[i % len(GOLDS)], response, mode=mode)
        assert isinstance(staged, Job | Verdict)


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_batches_through_the_pool_return_a_verdict_per_row(mode: str) -> None:
    responses = RESPONSES[:400]
    golds = [GOLDS[i % len(GOLDS)] for i in range(len(responses))]
    with Verifier(mode=mode, timeout=1.0, workers=2) as verifier:
        _check(verifier.verify_batch(golds, responses), len(responses))
        same = verifier.verify_batch(golds[:50], [f"\\boxed{{{g}}}" for g in golds[:50]])
        _check(same, 50)
        pairs = list(zip(golds[:100], responses[:100], strict=True))
        assert all(isinstance(x, bool) for x in verifier.equivalent_batch(pairs))
    _check(verify_batch(golds[:100], responses[:100], mode=mode, timeout=1.0), 100)
