"""Batch verification on a persistent pool of worker processes, with hard per-task deadlines.

Why processes and pebble: sympy work can hang in C (big-int powers) where no signal reaches it,
and the only reliable stop is killing the process. pebble's ``ProcessPool`` kills a task's
worker when its timeout expires and starts a replacement, which is exactly that. Tasks are sent
in chunks to amortise IPC; if a chunk misses its deadline, its tasks are retried one by one so
that only the guilty one is reported as ``timeout``. Identical jobs in a batch are computed
once, and workers cache parsed golds and answers.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from oreal.verify import verdict as R
from oreal.verify.extract import check_mode
from oreal.verify.rules import Gold, Job, prepare, prepare_equivalence
from oreal.verify.screens import DEFAULT_LIMITS, Limits
from oreal.verify.verdict import Verdict

_Result = tuple[bool, str, str | None]
_MAX_CHUNK = 64


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _context(start_method: str | None) -> Any:
    """``forkserver`` by default: workers fork from a clean server process, never from the
    caller (which may hold CUDA contexts or threads); the worker module is preloaded there."""
    methods = multiprocessing.get_all_start_methods()
    method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["oreal.verify._warm"])
    return ctx


class Verifier:
    """Owns a worker pool; use as a context manager or call :meth:`close`.

    ``mode`` is ``"strict"`` (boxed answers only; training rewards) or ``"lenient"``
    (evaluation of models not trained on the boxed format); ``timeout`` is the per-check limit in
    seconds; ``workers`` defaults to the usable CPU count. The pool starts on first need: batches
    settled by rules and the fast path never start it.
    """

    # Test hook: the function run in the workers (default: equivalence.run_chunk).
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
        self._memory_limit_mb = memory_limit_mb
        self._start_method = start_method
        self._pool: Any = None
        self._lock = threading.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            pool.join()

    def _get_pool(self) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError("Verifier is closed")
            if self._pool is None:
                from pebble import ProcessPool

                from oreal.verify.equivalence import init_worker

                self._pool = ProcessPool(
                    max_workers=self.workers,
                    initializer=init_worker,
                    initargs=(self._memory_limit_mb,),
                    context=_context(self._start_method),
                )
            return self._pool

    # -- execution ---------------------------------------------------------------------------
    def _hard_timeout(self, timeout: float) -> float:
        """Budget for one chunk: the soft per-item limit plus slack for IPC and start-up."""
        return timeout + max(1.0, timeout)

    def _run(self, items: list[tuple[Any, ...]], timeout: float) -> list[_Result]:
        """Run tasks on the pool in chunks; a chunk that dies or times out is retried per item."""
        if not items:
            return []
        from oreal.verify.equivalence import run_chunk

        task = self._task or run_chunk
        pool = self._get_pool()
        size = max(1, min(_MAX_CHUNK, math.ceil(len(items) / (self.workers * 4))))
        chunks = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
        hard = self._hard_timeout(timeout)
        futures = [
            (idx, pool.schedule(task, args=([items[i] for i in idx], timeout), timeout=hard))
            for idx in chunks
        ]
        results: list[_Result | None] = [None] * len(items)
        singles = []
        for idx, future in futures:
            try:
                for i, res in zip(idx, future.result(), strict=True):
                    results[i] = res
            except Exception as exc:  # timeout, ProcessExpired (worker died), pickling errors
                if len(idx) > 1:  # find the guilty item; the others get their verdicts
                    singles += [
                        (i, pool.schedule(task, args=([items[i]], timeout), timeout=hard))
                        for i in idx
                    ]
                else:
                    timed_out = isinstance(exc, FutureTimeoutError)
                    results[idx[0]] = (False, R.TIMEOUT if timed_out else R.ERROR, None)
        for i, future in singles:
            try:
                results[i] = future.result()[0]
            except FutureTimeoutError:
                results[i] = (False, R.TIMEOUT, None)
            except Exception:
                results[i] = (False, R.ERROR, None)
        return [r if r is not None else (False, R.ERROR, None) for r in results]

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
        if len(golds) != len(responses):
            raise ValueError(f"{len(golds)} golds but {len(responses)} responses")
        if truncated is not None and len(truncated) != len(responses):
            raise ValueError(f"{len(truncated)} truncated flags but {len(responses)} responses")
        flags: Iterable[bool] = truncated if truncated is not None else [False] * len(responses)
        staged = [
            prepare(g, r, mode=self.mode, truncated=bool(t), limits=self.limits)
            for g, r, t in zip(golds, responses, flags, strict=True)
        ]
        return self._run_jobs(staged)

    def verify(self, gold: Gold, response: str, truncated: bool = False) -> Verdict:
        """One check with this verifier's settings."""
        return self.verify_batch([gold], [response], [truncated])[0]

    def equivalent_batch(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Answer-vs-answer equivalence (majority-vote grouping); the first is the reference."""
        decided = [prepare_equivalence(a, b, self.limits) for a, b in pairs]
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
    check_mode(mode)
    if not timeout > 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    staged = prepare(gold, response, mode=mode, truncated=truncated)
    if isinstance(staged, Verdict):
        return staged
    return _shared_verifier()._run_jobs([staged], timeout)[0]
