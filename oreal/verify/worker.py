"""One check in a worker process, under a budget of CPU seconds.

Why CPU time and not wall time: a reward must be a function of its input. With a wall-clock
deadline, a check that needs 4 s of CPU passes on an idle machine and times out on a loaded one,
so identical rows got different verdicts. The budget here counts the worker's own CPU seconds,
which machine load does not change (the CPU time of the same work varies by a few percent, so
only checks within a few percent of the budget can still go either way). Two layers:

* **soft**: an ``ITIMER_PROF`` timer (process CPU time) raises :class:`Deadline` between
  bytecodes after ``timeout`` CPU seconds, so a slow ``simplify`` ends cleanly as ``timeout``;
* **hard**: the ``RLIMIT_CPU`` soft limit is set to ``timeout`` plus a grace period above the
  worker's current usage. The kernel then sends ``SIGXCPU``, whose default action ends the
  process even inside C code that never returns to the interpreter (CPython big-int powers);
  the pool reports that task as ``timeout`` and starts a new worker.

The pool keeps a wall-clock limit only as a backstop for a worker that stalls without using
CPU (:func:`wall_backstop`).
"""

from __future__ import annotations

import math
import signal
import sys
from typing import Any

from oreal.verify import verdict as R
from oreal.verify.equivalence import equivalent, judge, warm

Result = tuple[bool, str, str | None]
"""(correct, reason, extracted answer that was judged or ``None``)."""


class Deadline(BaseException):
    """Raised by the soft timer. A ``BaseException`` so that math-verify's and sympy's
    ``except Exception`` handlers do not swallow it and keep computing past the deadline."""


_armed = False
_hard_limit = False  # RLIMIT_CPU is set per task only in pool workers, never in a caller


def _on_tick(signum: int, frame: Any) -> None:
    if _armed:
        raise Deadline


def cpu_grace(timeout: float) -> float:
    """CPU seconds past the soft budget before the kernel ends a worker stuck in C code."""
    return max(1.0, timeout)


def wall_backstop(timeout: float) -> float:
    """Wall seconds after which the pool kills a task whatever its CPU use: four times the hard
    CPU budget plus 5 s, so that only a stalled worker (not a loaded machine) reaches it."""
    return 4.0 * (timeout + cpu_grace(timeout)) + 5.0


def init_worker(memory_limit_mb: int | None = None) -> None:
    """Pool initializer: CPU-time signals, no core files, memory cap, warm parser caches."""
    global _hard_limit
    signal.signal(signal.SIGPROF, _on_tick)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    try:
        import resource

        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGXCPU end writes no core file
        _hard_limit = True
        if memory_limit_mb:
            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        pass
    warm()


def _set_cpu_limit(seconds_from_now: float | None) -> None:
    """Set (or, with ``None``, lift) the RLIMIT_CPU soft limit relative to current usage."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if seconds_from_now is None:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    limit = math.ceil(usage.ru_utime + usage.ru_stime + seconds_from_now)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))


def _check(item: tuple[Any, ...]) -> Result:
    if item[0] == "judge":
        return judge(item[1], item[2])
    ok = equivalent(item[1], item[2])
    return ok, R.MATCH if ok else R.MISMATCH, None


def run_item(item: tuple[Any, ...], timeout: float) -> Result:
    """Pool entry point: one check under ``timeout`` CPU seconds; failures become incorrect
    verdicts, never exceptions. ``item`` is ``("judge", gold_parts, answers)`` or
    ``("equiv", a, b)``."""
    global _armed
    if signal.getsignal(signal.SIGPROF) is not _on_tick:  # in-process use without init_worker
        signal.signal(signal.SIGPROF, _on_tick)
    if _hard_limit:
        _set_cpu_limit(timeout + cpu_grace(timeout))
    try:
        signal.setitimer(signal.ITIMER_PROF, timeout, 0.05)
        _armed = True
        try:
            return _check(item)
        finally:
            _armed = False
            signal.setitimer(signal.ITIMER_PROF, 0)
    except Deadline:  # also a late tick landing between the two try blocks
        return False, R.TIMEOUT, None
    except (RecursionError, MemoryError):
        return False, R.TOO_LONG, None
    except Exception:
        return False, R.ERROR, None
    finally:
        if _hard_limit:
            _set_cpu_limit(None)
