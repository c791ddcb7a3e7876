"""Safety: blow-ups come back as ``too_long``/``timeout`` without hanging the caller, a killed
worker is replaced, a check over budget costs one budget, and no text from a model ever reaches
Python ``eval``/``exec``."""

from __future__ import annotations

import builtins
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oreal.verify import Limits, Verdict, Verifier, verify
from oreal.verify import equivalence as eq_module
from oreal.verify.rules import Job, prepare
from oreal.verify.worker import run_item

BLOWUPS = [
    r"\boxed{9^{9^{9^{9}}}}",
    r"\boxed{10^{10^{10^{10}}}}",
    r"\boxed{100000!}",
    r"\boxed{(10^{6})!}",
    r"\boxed{2^{10^{7}}}",
    r"\boxed{x^{10^{100}} + 5}",
    r"\boxed{" + "{" * 10_000 + "5" + "}" * 10_000 + "}",
    r"\boxed{" + "(" * 50 + "5" + ")" * 50 + "}",
    r"\boxed{" + "1+" * 2_000 + "5}",
    "x" * 1_048_576 + r" \boxed{5}",
    r"\boxed{e^{10^{6}}}",  # ~10 CPU s against a float gold: timeout or mismatch with the load
    r"\boxed{\mathrm{e}^{-10^{6}}}",
    r"\boxed{\exp(1000000)}",
    r"\boxed{\sinh(10^{6})}",
    r"\boxed{\pi^{10^{6}}}",
    r"\boxed{e^{e^{e^{e}}}}",
]


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    with Verifier(timeout=1.0) as instance:
        yield instance


@pytest.mark.parametrize(
    "answer", [r"e^{1000}", r"2e^{3}", r"\exp(x)", r"\pi^{2}", r"e^{2\pi i}", r"x^{10^{6}}"]
)
def test_ordinary_constants_and_exponentials_are_not_screened(answer: str) -> None:
    assert isinstance(prepare("1", rf"\boxed{{{answer}}}"), Job)


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_blowups_are_screened_before_parsing(mode: str) -> None:
    for response in BLOWUPS:
        staged = prepare("5", response, mode=mode)
        assert isinstance(staged, Verdict) and staged.reason == "too_long", response[:40]


def test_blowups_without_a_box_are_screened_in_lenient_mode(verifier: Verifier) -> None:
    unboxed = [r.replace(r"\boxed", "The answer is ", 1) for r in BLOWUPS[:6]]
    start = time.perf_counter()
    with Verifier(mode="lenient") as lenient:
        verdicts = lenient.verify_batch(["5"] * len(unboxed), unboxed)
        assert not lenient.pool_started  # settled without a worker
    assert [v.reason for v in verdicts] == ["too_long"] * len(unboxed)
    assert time.perf_counter() - start < 5.0
    assert verifier.verify("5", BLOWUPS[0]).reason == "too_long"


def test_slow_python_work_hits_the_soft_deadline(verifier: Verifier) -> None:
    assert verifier.equivalent("x + 1", "1 + x")  # the pool is up: its start-up is not timed
    start = time.perf_counter()
    verdicts = verifier.verify_batch(
        ["5", "x+1"], [r"\boxed{\sum_{k=1}^{100000} k!}", r"\boxed{1+x}"]
    )
    assert verdicts[0] == Verdict(False, r"\sum_{k=1}^{100000} k!", "timeout")
    assert verdicts[1].correct
    assert time.perf_counter() - start < 10.0


def test_uninterruptible_c_code_is_killed_by_the_hard_deadline() -> None:
    # Screens relaxed so that CPython's big-int power (C code, deaf to signals) really runs.
    relaxed = Limits(max_digits=10**12, max_exponent_log10=100.0, max_factorial=10**12)
    start = time.perf_counter()
    with Verifier(timeout=1.0, limits=relaxed) as relaxed_verifier:
        verdicts = relaxed_verifier.verify_batch(
            ["5", "5", "7"], [r"\boxed{9^{9^{9}}}", r"\boxed{5}", r"\boxed{1000000!}"]
        )
        assert [v.reason for v in verdicts] == ["timeout", "match", "timeout"]
        assert relaxed_verifier.verify("x+1", r"\boxed{1+x}").correct  # workers replaced
    assert time.perf_counter() - start < 30.0


def _blocking_item(item: tuple[Any, ...], timeout: float) -> Any:
    """Stand-in worker task: an item ``("equiv", "BLOCK", ...)`` stalls without using CPU (so
    neither CPU-time limit fires), and only the pool's wall-clock backstop can end it."""
    if item[1] == "BLOCK":
        time.sleep(60)
    return run_item(item, timeout)


class _BlockingVerifier(Verifier):
    _task = staticmethod(_blocking_item)


def test_a_stalled_check_costs_one_deadline_and_no_other_verdict() -> None:
    pairs = [(f"{i} + x", f"x + {i}") for i in range(20)]
    pairs[7] = ("BLOCK", "1")
    start = time.perf_counter()
    with _BlockingVerifier(timeout=0.5, workers=2) as blocking:
        results = blocking.equivalent_batch(pairs)
        assert results == [i != 7 for i in range(20)]
        assert blocking.equivalent("2x", "x + x")
    assert time.perf_counter() - start < 30.0


PAYLOADS = [
    "__import__('os').system('touch {marker}')",
    "eval(\"__import__('os').system('touch {marker}')\")",
    "exec(\"import os; os.system('touch {marker}')\")",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "1; import os; os.system('touch {marker}')",
    "__import__('subprocess').call(['touch', '{marker}'])",
]


def _responses(marker: Path) -> list[str]:
    out = []
    for payload in PAYLOADS:
        code = payload.format(marker=marker)
        out += [
            rf"\boxed{{{code}}}",
            f"The answer is {code}",
            f"Final Answer: ${code}$",
            code,
            f"#### {code}",
        ]
    return out


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_model_text_never_reaches_eval(mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    responses = _responses(marker)
    with Verifier(mode=mode) as instance:
        verdicts = instance.verify_batch(["7"] * len(responses), responses)
        instance.equivalent_batch([(r, "7") for r in responses] + [("7", r) for r in responses])
    verify("7", responses[0], mode=mode)
    assert not any(v.correct for v in verdicts)
    assert not marker.exists()


def test_equivalence_code_path_calls_no_eval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In-process proof: ``eval`` is fatal and ``exec`` is only allowed for sympy's own
    generated monomial helpers (fixed templates); the checks still complete correctly."""
    marker = tmp_path / "pwned"
    jobs = [prepare("7", r, mode="lenient") for r in _responses(marker)]
    jobs += [prepare("x^2+1", r"\boxed{1+x^2}"), prepare("[0,1)", r"\boxed{[0, 1.0)}")]
    items = [("judge", j.gold, j.answers) for j in jobs if isinstance(j, Job)]
    assert len(items) >= 10
    eq_module.warm()  # imports done before the traps are set
    real_exec = builtins.exec

    def no_eval(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"eval called on {args[0]!r:.80}")

    def guarded_exec(code: object, *args: Any, **kwargs: Any) -> None:
        if isinstance(code, str) and not code.startswith("def monomial_"):
            raise AssertionError(f"exec called on {code!r:.80}")
        real_exec(code, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "eval", no_eval)
    monkeypatch.setattr(builtins, "exec", guarded_exec)
    eq_module._parse.cache_clear()
    results = [run_item(item, 5.0) for item in items]
    assert [r[1] for r in results[-2:]] == ["match", "match"]
    assert all(r[1] == "mismatch" for r in results[:-2])
    assert not marker.exists()


def test_number_literals_are_built_without_sympify() -> None:
    assert eq_module._number_literal("1,000") == 1000
    assert str(eq_module._number_literal("0.0833333333333333")) == "0.0833333333333333"
    with pytest.raises(ValueError, match="not a number literal"):
        eq_module._number_literal("__import__('os')")


def test_shared_verify_function() -> None:
    assert verify("025", r"\boxed{25}") == Verdict(True, "25", "match")
    assert verify("x+1", r"\boxed{1+x}", timeout=2.0).correct
    assert verify("5", "The answer is 5", mode="lenient").correct
    assert verify("5", r"\boxed{5}", truncated=True).reason == "truncated"
    with pytest.raises(ValueError, match="unknown verifier mode"):
        verify("5", r"\boxed{5}", mode="relaxed")
    with pytest.raises(ValueError, match="timeout"):
        verify("5", r"\boxed{5}", timeout=-1)


def test_no_stray_timer_after_in_process_checks() -> None:
    assert run_item(("equiv", "1", "1.0"), 0.2)[:2] == (True, "match")
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
