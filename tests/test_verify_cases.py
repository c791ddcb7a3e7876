"""The labelled verifier cases in tests/data/verifier, run through the batch API.

``dev_cases.jsonl`` are (gold, boxed response) pairs collected from Math-Verify, OlympiadBench,
verl, open-r1, hendrycks/math and Qwen2.5-Math tests, checked in strict mode;
``extraction_cases.jsonl`` are free-text responses checked in lenient mode. Every case must get
its expected verdict; no case is excluded. One batch per file keeps the run fast (the pool and
the workers' parse caches are shared by all cases).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oreal.verify import REASONS, Verdict, Verifier

DATA = Path(__file__).parent / "data" / "verifier"


def _load(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# Labels we believe are wrong for a training reward, kept out of the expected-verdict tests.
# Both are Math-Verify parser-notation regression tests whose gold is an integer and whose
# answer is arithmetic left undone; as a reward, accepting them taught the CPU demo's policy to
# box the question's own expression ("\\boxed{97 - 61}") within a few steps. They are checked
# below to be rejected with reason "unevaluated".
EXCLUDED = {
    "vc013": "gold 1, answer \\frac3{3}: an unevaluated fraction",
    "ve007": "gold 10, answer (9+1): an unevaluated sum",
}
ALL_DEV = _load("dev_cases.jsonl")
ALL_EXTRACTION = _load("extraction_cases.jsonl")
DEV = [case for case in ALL_DEV if case["id"] not in EXCLUDED]
EXTRACTION = [case for case in ALL_EXTRACTION if case["id"] not in EXCLUDED]


@pytest.fixture(scope="module")
def dev_verdicts() -> Iterator[dict[str, Verdict]]:
    with Verifier(mode="strict") as verifier:
        verdicts = verifier.verify_batch([c["gold"] for c in DEV], [c["pred"] for c in DEV])
    yield {case["id"]: verdict for case, verdict in zip(DEV, verdicts, strict=True)}


@pytest.fixture(scope="module")
def extraction_verdicts() -> Iterator[dict[str, Verdict]]:
    with Verifier(mode="lenient") as verifier:
        verdicts = verifier.verify_batch(
            [c["gold"] for c in EXTRACTION], [c["pred"] for c in EXTRACTION]
        )
    yield {case["id"]: verdict for case, verdict in zip(EXTRACTION, verdicts, strict=True)}


def test_case_files_are_complete() -> None:
    assert len(ALL_DEV) == 227 and len(ALL_EXTRACTION) == 27
    assert len(DEV) + len(EXTRACTION) == 227 + 27 - len(EXCLUDED)
    assert len({c["id"] for c in DEV + EXTRACTION}) == len(DEV) + len(EXTRACTION)


@pytest.mark.parametrize("case_id", sorted(EXCLUDED))
def test_excluded_cases_are_rejected_as_unevaluated(case_id: str) -> None:
    case = next(c for c in ALL_DEV + ALL_EXTRACTION if c["id"] == case_id)
    mode = "strict" if case in ALL_DEV else "lenient"
    with Verifier(mode=mode) as verifier:
        verdict = verifier.verify_batch([case["gold"]], [case["pred"]])[0]
    assert verdict.correct is False
    assert verdict.reason == "unevaluated"


@pytest.mark.parametrize("case", DEV, ids=[c["id"] for c in DEV])
def test_dev_case_strict(case: dict[str, Any], dev_verdicts: dict[str, Verdict]) -> None:
    verdict = dev_verdicts[case["id"]]
    assert verdict.correct is case["expected"], (case["category"], case["gold"], verdict)
    assert verdict.reason in REASONS
    assert (verdict.reason == "match") is verdict.correct


@pytest.mark.parametrize("case", EXTRACTION, ids=[c["id"] for c in EXTRACTION])
def test_extraction_case_lenient(
    case: dict[str, Any], extraction_verdicts: dict[str, Verdict]
) -> None:
    verdict = extraction_verdicts[case["id"]]
    assert verdict.correct is case["expected"], (case["category"], case["gold"], verdict)
    assert verdict.extracted is not None


def test_free_text_cases_have_no_answer_in_strict_mode() -> None:
    with Verifier(mode="strict") as verifier:
        boxless = [c for c in EXTRACTION if "\\boxed" not in c["pred"]]
        verdicts = verifier.verify_batch([c["gold"] for c in boxless], [c["pred"] for c in boxless])
    assert boxless and all(v.reason == "no_answer" and not v.correct for v in verdicts)
