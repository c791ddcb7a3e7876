"""Batch verification: rules in the calling process, sympy in a pool of worker processes.

The pool lives in a helper process (:mod:`oreal.verify.host`), so the caller's main module is
never imported again by a worker: scripts without an ``if __name__ == "__main__":`` guard,
``python -`` and notebooks work. Why processes: sympy work can hang in C (big-int powers) where
no signal reaches it, and the only reliable stop is ending the process. Each check runs under a
budget of CPU seconds (:mod:`oreal.verify.worker`), so a verdict does not depend on machine load,
and a check over budget costs one budget: tasks are scheduled one check each (pebble's per-task
overhead is small next to a sympy check), so a killed worker takes no other verdict with it.
Identical jobs in a batch are computed once, and workers cache parsed golds and answers.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from oreal.verify import verdict as R
from oreal.verify.extract import check_mode
from oreal.verify.host import Result, WorkerHost
from oreal.verify.normalize import gold_parts
from oreal.verify.rules import Gold, Job, prepare, prepare_equivalence
from oreal.verify.screens import DEFAULT_LIMITS, Limits
from oreal.verify.verdict import Verdict

_log = logging.getLogger(__name__)


def _stage(
    gold: Gold, response: str, *, mode: str, truncated: bool, limits: Limits = DEFAULT_LIMITS
) -> Verdict | Job:
    """The rule stage for one pair. Arguments of the wrong type raise; anything a response can
    trigger otherwise becomes an ``error`` verdict, so that one row never costs a whole batch."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    gold_parts(gold)  # raises TypeError for a gold of the wrong type
    try:
        return prepare(gold, response, mode=mode, truncated=truncated, limits=limits)
    except Exception:
        _log.exception("verifier rule stage failed on a response; counted as 'error'")
        return Verdict(False, None, R.ERROR)


def _aligned_flags(
    golds: Sequence[Gold], responses: Sequence[str], truncated: Sequence[bool] | None
) -> Sequence[bool]:
    """The truncation flags, after checking that the three sequences are aligned."""
    if len(golds) != len(responses):
        raise ValueError(f"{len(golds)} golds but {len(responses)} responses")
    if truncated is not None and len(truncated) != len(responses):
        raise ValueError(f"{len(truncated)} truncated flags but {len(responses)} responses")
    return truncated if truncated is not None else [False] * len(responses)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class Verifier:
    """Owns a worker pool; use as a context manager or call :meth:`close`.

    ``mode`` is ``"strict"`` (boxed answers only; training rewards) or ``"lenient"``
    (evaluation of models not trained on the boxed format); ``timeout`` is the per-check budget in
    CPU seconds of a worker; ``workers`` defaults to the usable CPU count. The pool starts on
    first need: batches settled by rules and the fast path never start it.
    """

    # Test hook: the function run in the workers for each check (default: worker.run_item).
    _task: Any = None

    def __init__(
        self,
        mode: str = "strict",
        timeout: float = 5.0,
        workers: int | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        memory_limit_mb: int | None = 4096,
        start_method: str | None = None,
    ) -> None:
        self.mode = check_mode(mode)
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.timeout = float(timeout)
        self.workers = workers or _default_workers()
        self.limits = limits
        self._host = WorkerHost(self.workers, memory_limit_mb, start_method)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._closed = True
        self._host.close()

    @property
    def pool_started(self) -> bool:
        """Whether the worker pool is running (batches settled by rules never start it)."""
        return self._host.running

    # -- execution ---------------------------------------------------------------------------
    def _run(self, items: list[tuple[Any, ...]], timeout: float) -> list[Result]:
        """Run checks on the pool, one task per check, results in order."""
        if not items:
            return []
        if self._closed:
            raise RuntimeError("Verifier is closed")
        from oreal.verify.worker import run_item

        return self._host.run(self._task or run_item, items, timeout)

    def _run_jobs(
        self, verdicts: list[Verdict | Job], timeout: float | None = None
    ) -> list[Verdict]:
        """Send the distinct jobs to the pool and merge their results back in order."""
        keyed: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        items: list[tuple[Any, ...]] = []
        for v in verdicts:
            if isinstance(v, Job) and (v.gold, v.answers) not in keyed:
                keyed[(v.gold, v.answers)] = len(items)
                items.append(("judge", v.gold, v.answers))
        # Same gold next to each other: better use of the workers' parse caches.
        order = sorted(range(len(items)), key=lambda k: items[k][1])
        done = self._run([items[k] for k in order], timeout or self.timeout)
        by_item = {k: done[pos] for pos, k in enumerate(order)}
        out: list[Verdict] = []
        for v in verdicts:
            if isinstance(v, Verdict):
                out.append(v)
                continue
            ok, reason, judged = by_item[keyed[(v.gold, v.answers)]]
            out.append(Verdict(ok, judged if judged is not None else v.extracted, reason))
        return out

    # -- public API --------------------------------------------------------------------------
    def verify_batch(
        self,
        golds: Sequence[Gold],
        responses: Sequence[str],
        truncated: Sequence[bool] | None = None,
    ) -> list[Verdict]:
        """Verdicts for aligned (gold, response[, truncated]) sequences, in input order."""
        flags = _aligned_flags(golds, responses, truncated)
        staged = [
            _stage(g, r, mode=self.mode, truncated=bool(t), limits=self.limits)
            for g, r, t in zip(golds, responses, flags, strict=True)
        ]
        return self._run_jobs(staged)

    def verify(self, gold: Gold, response: str, truncated: bool = False) -> Verdict:
        """One check with this verifier's settings."""
        return self.verify_batch([gold], [response], [truncated])[0]

    def equivalent_batch(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Answer-vs-answer equivalence (majority-vote grouping); the first is the reference."""
        decided: list[bool | None] = []
        for a, b in pairs:
            try:
                decided.append(prepare_equivalence(a, b, self.limits))
            except Exception:  # never expected: rules are pure string work; counted unequal
                _log.exception("verifier equivalence rules failed; counted as not equivalent")
                decided.append(False)
        todo = [i for i, d in enumerate(decided) if d is None]
        done = self._run([("equiv", pairs[i][0], pairs[i][1]) for i in todo], self.timeout)
        for i, (ok, _reason, _x) in zip(todo, done, strict=True):
            decided[i] = ok
        return [bool(d) for d in decided]

    def equivalent(self, a: str, b: str) -> bool:
        """Are two extracted answers the same value? Safe and time-limited like every check."""
        return self.equivalent_batch([(a, b)])[0]


_shared: Verifier | None = None
_shared_lock = threading.Lock()


def _shared_verifier() -> Verifier:
    """Process-wide verifier for :func:`verify`, created on first need, closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = Verifier(workers=min(2, _default_workers()))
            atexit.register(_shared.close)
        return _shared


def verify(
    gold: Gold,
    response: str,
    *,
    mode: str = "strict",
    truncated: bool = False,
    timeout: float = 5.0,
) -> Verdict:
    """One safe check. Rules and the fast path run here; sympy runs in a shared worker pool."""
    return verify_batch([gold], [response], mode=mode, truncated=[truncated], timeout=timeout)[0]


def verify_batch(
    golds: Sequence[Gold],
    responses: Sequence[str],
    *,
    mode: str = "strict",
    truncated: Sequence[bool] | None = None,
    timeout: float = 5.0,
) -> list[Verdict]:
    """Safe checks of aligned sequences on the shared process-wide pool (what the framework
    adapters in :mod:`oreal.integrations` call); like :meth:`Verifier.verify_batch`."""
    check_mode(mode)
    if not timeout > 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    flags = _aligned_flags(golds, responses, truncated)
    staged = [
        _stage(g, r, mode=mode, truncated=bool(t))
        for g, r, t in zip(golds, responses, flags, strict=True)
    ]
    if all(isinstance(v, Verdict) for v in staged):
        return [v for v in staged if isinstance(v, Verdict)]
    return _shared_verifier()._run_jobs(staged, timeout)
