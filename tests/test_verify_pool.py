"""The worker pool: usable from any caller (no ``__main__`` guard, stdin, threads), one CPU-time
budget per check, and a host process that is restarted if it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from oreal.verify import Verifier, verify
from oreal.verify import worker as worker_module
from oreal.verify.worker import run_item

# Needs sympy, so it reaches the pool; printed as one line per verdict.
_SCRIPT = textwrap.dedent(
    r"""
    from oreal.verify import Verifier, verify
    print(verify("(x+1)^2", r"\boxed{x^2+2x+1}"))
    with Verifier(workers=1) as verifier:
        print(verifier.verify("\\frac{1}{2}", r"\boxed{0.5}"))
    """
)
_EXPECTED = [
    "Verdict(correct=True, extracted='x^2+2x+1', reason='match')",
    "Verdict(correct=True, extracted='0.5', reason='match')",
]


def _run_python(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, env=env, timeout=240
    )


def test_a_script_without_main_guard_gets_correct_verdicts(tmp_path: Path) -> None:
    script = tmp_path / "no_guard.py"
    script.write_text(_SCRIPT, encoding="utf-8")
    done = _run_python([str(script)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == _EXPECTED
    assert "Traceback" not in done.stderr


def test_a_program_read_from_stdin_gets_correct_verdicts() -> None:
    done = _run_python(["-"], stdin=_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == _EXPECTED


def test_concurrent_callers_share_one_pool() -> None:
    """Frameworks call a reward from many threads (OpenRLHF: one per sample)."""
    golds = [f"{i} + x" for i in range(24)]
    results: dict[int, bool] = {}
    with Verifier(workers=2) as verifier:

        def check(i: int) -> None:
            results[i] = verifier.verify(
                golds[i], rf"\boxed{{x + {i if i % 3 else i + 1}}}"
            ).correct

        threads = [threading.Thread(target=check, args=(i,)) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {i: i % 3 != 0 for i in range(24)}


def test_a_killed_host_is_replaced() -> None:
    with Verifier(workers=1) as verifier:
        assert verifier.equivalent("x + 1", "1 + x")
        session = verifier._host._session
        assert session is not None
        session.process.kill()
        session.process.wait()
        assert verifier.equivalent("2x", "x + x")
        assert verifier._host._session is not session


def test_the_shared_verifier_is_closed_at_exit(tmp_path: Path) -> None:
    """No host or worker outlives the program that used the shared ``verify``."""
    script = tmp_path / "shared.py"
    script.write_text(
        textwrap.dedent(
            """
            from oreal.verify import verify
            from oreal.verify.pool import _shared_verifier
            assert verify("x+1", r"\\boxed{1+x}").correct
            print(_shared_verifier()._host._session.process.pid)
            """
        ),
        encoding="utf-8",
    )
    done = _run_python([str(script)])
    assert done.returncode == 0, done.stderr
    host_pid = int(done.stdout.strip())
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(host_pid, 0)


def _wall_then_cpu(wall_s: float, cpu_s: float) -> Any:
    def check(item: tuple[Any, ...]) -> tuple[bool, str, None]:
        time.sleep(wall_s)  # waiting, as on a loaded machine: uses no CPU
        end = time.process_time() + cpu_s
        while time.process_time() < end:
            pass
        return True, "match", None

    return check


def test_the_budget_counts_cpu_seconds_not_wall_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_check", _wall_then_cpu(wall_s=0.6, cpu_s=0.1))
    assert run_item(("equiv", "1", "1"), 0.3) == (True, "match", None)
    monkeypatch.setattr(worker_module, "_check", _wall_then_cpu(wall_s=0.0, cpu_s=0.6))
    assert run_item(("equiv", "1", "1"), 0.3) == (False, "timeout", None)
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


def test_identical_checks_get_identical_verdicts() -> None:
    """The check of issue #13 (about 10 CPU seconds, so 'timeout' or 'mismatch' with the load)
    is now screened before sympy; identical rows anywhere in a batch get one verdict."""
    hostile = r"\boxed{e^{10^{6}}}"
    with Verifier(workers=2, timeout=2.0) as verifier:
        verdicts = verifier.verify_batch(["2.718", "3.5"] * 10, [hostile] * 20)
        assert {v.reason for v in verdicts} == {"too_long"}
        assert not verifier.pool_started
    assert verify("2.718", hostile).reason == "too_long"
