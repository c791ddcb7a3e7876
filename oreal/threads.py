"""Thread count for a decoding loop, chosen by timing it: all cores when they are free, fewer
when another process holds some.

A decoding step on a small model is hundreds of short OpenMP parallel regions. When another
process runs on one of the cores, every region waits for the thread that is not scheduled, and
two threads become slower than one (measured on the 2-core machine: 2 threads 225-435 tok/s,
1 thread 490 tok/s beside one busy loop; 2 threads 820 tok/s vs 1 thread 510 idle; docs/rollout.md
"Threads on a busy machine"). Which count wins depends on the load at that moment, so
:class:`ThreadChooser` measures it: every ``period`` steps it runs a short trial in which the
candidate counts alternate step by step, then keeps the fastest until the next trial.

Changing the thread count does not change a step's numbers here: every op of the fast path
splits work over rows or output columns, not over a reduction (tested: the same tokens and
log-probs with 1 and 2 threads), so keyed sampling stays exact.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["ThreadChooser", "candidate_thread_counts", "shared_chooser"]

T = TypeVar("T")


def candidate_thread_counts(threads: int) -> list[int]:
    """``threads``, then halved down to 1: ``8 -> [8, 4, 2, 1]``, ``2 -> [2, 1]``."""
    counts = [max(1, threads)]
    while counts[-1] > 1:
        counts.append(counts[-1] // 2)
    return counts


class ThreadChooser:
    """Runs the steps of a loop with the intra-op thread count that is currently fastest.

    Steps ``0 .. trial - 1`` of every ``period`` are a trial: the candidates take turns
    (``trial_rounds`` steps each, interleaved so that slow drifts such as a growing KV cache
    or a change in background load hit all of them alike); the one with the lowest median
    step time runs the rest of the period. The count it chose carries over to the next call
    loop: :meth:`begin` starts a loop with a trial (the load may have changed since) and
    :meth:`restore` gives torch back its setting when the loop ends.
    """

    def __init__(self, candidates: list[int], *, trial_rounds: int = 2, period: int = 32) -> None:
        if not candidates or min(candidates) < 1:
            raise ValueError("thread candidates must be >= 1")
        if period < trial_rounds * len(candidates):
            raise ValueError("period must be at least trial_rounds * len(candidates)")
        self.candidates = list(dict.fromkeys(candidates))
        self.trial = trial_rounds * len(self.candidates)
        self.period = period
        self.chosen = self.candidates[0]
        self._step = 0
        self._times: dict[int, list[float]] = {}
        self._restore_to: int | None = None

    @classmethod
    def for_current_threads(cls, **kwargs: int) -> ThreadChooser:
        """Candidates from torch's thread count now (the user's setting is the maximum)."""
        return cls(candidate_thread_counts(torch.get_num_threads()), **kwargs)

    def begin(self, *, trial: bool = True) -> None:
        """Start a loop: remember torch's thread count; begin with a trial (the load may have
        changed since the last loop) or, with ``trial=False``, continue the schedule."""
        self._restore_to = torch.get_num_threads()
        if trial:
            self._step = 0

    def run(
        self,
        step: Callable[..., T],
        *args: object,
        work: float = 1.0,
        timed: bool = True,
        **kwargs: object,
    ) -> T:
        """``step(*args, **kwargs)`` with the thread count this step of the schedule gives,
        timed; trial times are compared per unit of ``work`` (e.g. tokens) when steps differ in
        size. An untimed step (other work) runs with the chosen count, off the schedule."""
        if not timed:
            if self.chosen != torch.get_num_threads():
                torch.set_num_threads(self.chosen)
            return step(*args, **kwargs)
        position = self._step % self.period
        if position == 0:
            self._times = {}
        in_trial = position < self.trial and len(self.candidates) > 1
        threads = self.candidates[position % len(self.candidates)] if in_trial else self.chosen
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        start = time.perf_counter()
        result = step(*args, **kwargs)
        if in_trial:
            elapsed = (time.perf_counter() - start) / max(work, 1e-9)
            self._times.setdefault(threads, []).append(elapsed)
            if position == self.trial - 1:
                self.chosen = min(self._times, key=lambda n: statistics.median(self._times[n]))
        self._step += 1
        return result

    def restore(self) -> None:
        """Give torch back the thread count it had at :meth:`begin`."""
        if self._restore_to is not None and torch.get_num_threads() != self._restore_to:
            torch.set_num_threads(self._restore_to)
        self._restore_to = None


_SHARED: dict[str, ThreadChooser] = {}


def shared_chooser(loop: str, **kwargs: int) -> ThreadChooser:
    """The process's chooser for the loop named ``loop`` (e.g. ``"policy_update"``), kept
    across calls so its schedule spans them; rebuilt when torch's thread count was changed."""
    counts = candidate_thread_counts(torch.get_num_threads())
    chooser = _SHARED.get(loop)
    if chooser is None or chooser.candidates != counts:
        chooser = _SHARED[loop] = ThreadChooser(counts, **kwargs)
    return chooser
