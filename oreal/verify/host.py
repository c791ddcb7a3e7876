"""The worker pool runs in a helper process of ours, never as children of the caller.

Why: multiprocessing's ``spawn`` and ``forkserver`` children import the caller's main module
again. A script without an ``if __name__ == "__main__":`` guard then runs once more in every
worker (its own verifier calls fail there, so every sympy check came back as ``error``), and a
program read from stdin (``python -``) cannot be imported at all (the caller waited forever).
Frameworks make this worse: a reward function runs inside trainer scripts, notebooks and Ray
workers whose main module oreal does not control.

So the caller starts ``python -m oreal.verify._host_main``, a process whose main module is ours
(guarded), and talks to it over two pipes. The host owns the pebble pool; its workers import
this module, not the caller's. One host serves any number of threads of the caller: requests
carry an id and the answers come back as they finish.

Protocol (pickles over ``multiprocessing.connection``): caller → host ``(id, payload)`` where
``payload`` pickles ``(task, items, timeout)``, or ``None`` to stop; host → caller ``("ready",)``
once, then ``("done", id, results)`` or ``("error", id, message)``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from multiprocessing.connection import Connection
from typing import Any

from oreal.verify import verdict as R

Result = tuple[bool, str, str | None]
Task = Callable[[tuple[Any, ...], float], Result]
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0


class HostError(RuntimeError):
    """The host process could not start, died, or could not run a request."""


class _HostDied(HostError):
    """The host exited while requests were waiting (retried once)."""


class _Session:
    """One running host process: its pipe to the host and the requests waiting for answers."""

    def __init__(self, process: subprocess.Popen[bytes], send: Connection) -> None:
        self.process = process
        self.send = send
        self.pending: dict[int, Future[list[Result]]] = {}
        self.pid = os.getpid()


class WorkerHost:
    """The caller's handle on one host process, started on first use (thread-safe)."""

    def __init__(self, workers: int, memory_limit_mb: int | None, start_method: str | None) -> None:
        self._config = {
            "workers": workers,
            "memory_limit_mb": memory_limit_mb,
            "start_method": start_method,
        }
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._session: _Session | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether a host process is up (for tests and benchmarks: rules alone never start it)."""
        return self._session is not None

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self) -> _Session:
        """Start the host and wait for its "ready" (called with the lock held)."""
        host_read, parent_write = os.pipe()
        parent_read, host_write = os.pipe()
        env = dict(os.environ)
        # The host must import what the caller can: oreal itself and the module of the task.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)
        command = [sys.executable, "-m", "oreal.verify._host_main", str(host_read), str(host_write)]
        command.append(json.dumps(self._config))
        try:
            process = subprocess.Popen(
                command, pass_fds=(host_read, host_write), stdin=subprocess.DEVNULL, env=env
            )
        except BaseException:
            os.close(parent_read)
            os.close(parent_write)
            raise
        finally:
            os.close(host_read)
            os.close(host_write)
        send = Connection(parent_write, readable=False)
        receive = Connection(parent_read, writable=False)
        if not receive.poll(_START_TIMEOUT_S) or _recv_or_none(receive) != ("ready",):
            process.kill()
            code = process.wait()
            send.close()
            receive.close()
            raise HostError(
                f"the verifier's worker host did not start (exit code {code}); "
                "its error, if any, is printed above"
            )
        session = _Session(process, send)
        threading.Thread(
            target=self._read_answers, args=(session, receive), name="oreal-verify", daemon=True
        ).start()
        return session

    def _read_answers(self, session: _Session, receive: Connection) -> None:
        """Reader thread of one session: hand each answer to its request; at EOF fail the rest."""
        while (message := _recv_or_none(receive)) is not None:
            kind, request_id, body = message
            with self._lock:
                future = session.pending.pop(request_id, None)
            if future is None:
                continue
            if kind == "done":
                future.set_result(body)
            else:
                future.set_exception(HostError(f"the verifier's worker host failed: {body}"))
        receive.close()
        with self._lock:
            if self._session is session:
                self._session = None
            pending, session.pending = session.pending, {}
        for future in pending.values():
            future.set_exception(_HostDied("the verifier's worker host exited unexpectedly"))

    def close(self) -> None:
        """Stop the host and its workers (idempotent; the host also stops when we exit)."""
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
        if session is None or session.pid != os.getpid():
            return
        with contextlib.suppress(OSError):
            session.send.send(None)
        session.send.close()
        try:
            session.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            session.process.kill()
            session.process.wait()

    # -- requests ----------------------------------------------------------------------------
    def _submit(self, task: Task, items: Sequence[tuple[Any, ...]], timeout: float) -> Future:
        payload = pickle.dumps((task, list(items), timeout))
        with self._lock:
            if self._closed:
                raise HostError("the verifier's worker host is closed")
            request_id = next(self._ids)
            future: Future[list[Result]] = Future()
            for attempt in range(2):
                session = self._session
                stale = session is None or session.pid != os.getpid()  # forked: start our own
                if stale or session.process.poll() is not None:
                    session = self._session = self._start()
                session.pending[request_id] = future
                try:
                    session.send.send((request_id, payload))
                    break
                except OSError:  # the host died; its reader thread has not noticed yet
                    session.pending.pop(request_id, None)
                    self._session = None
                    if attempt:
                        raise HostError("the verifier's worker host keeps exiting") from None
        return future

    def run(self, task: Task, items: Sequence[tuple[Any, ...]], timeout: float) -> list[Result]:
        """Results of ``task(item, timeout)`` for every item, in order. A host that dies is
        restarted once for the request; a second death raises :class:`HostError`."""
        if not items:
            return []
        try:
            return self._submit(task, items, timeout).result()
        except _HostDied:
            return self._submit(task, items, timeout).result()


def _recv_or_none(receive: Connection) -> Any:
    try:
        return receive.recv()
    except (EOFError, OSError):
        return None


# -- the host process ------------------------------------------------------------------------
def _context(start_method: str | None) -> Any:
    """``forkserver`` where it exists: workers fork from a clean server process that preloaded
    and warmed the parser once; every worker, including replacements, starts warm."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["oreal.verify._warm"])
    return context


def _outcome(future: Any) -> Result:
    """A finished pebble future as a verdict tuple; a killed task is a ``timeout``."""
    from pebble import ProcessExpired

    try:
        return future.result()
    except FutureTimeoutError:  # the wall-clock backstop
        return False, R.TIMEOUT, None
    except ProcessExpired as expired:  # SIGXCPU: over the hard CPU budget
        return False, R.TIMEOUT if expired.exitcode == -signal.SIGXCPU else R.ERROR, None
    except Exception:
        return False, R.ERROR, None


def _serve_request(pool: Any, reply: Callable[[tuple[Any, ...]], None], request: Any) -> None:
    """Schedule every item of one request; answer when the last one finishes."""
    from oreal.verify.worker import wall_backstop

    request_id, payload = request
    try:
        task, items, timeout = pickle.loads(payload)
        futures = [
            pool.schedule(task, args=(item, timeout), timeout=wall_backstop(timeout))
            for item in items
        ]
    except Exception as error:
        reply(("error", request_id, f"{type(error).__name__}: {error}"))
        return
    remaining = [len(futures)]
    lock = threading.Lock()

    def on_done(_future: Any) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            reply(("done", request_id, [_outcome(f) for f in futures]))

    for future in futures:
        future.add_done_callback(on_done)


def serve(read_fd: int, write_fd: int, config: dict[str, Any]) -> None:
    """Host main loop: run requests on a pebble pool until the caller says stop or goes away."""
    from pebble import ProcessPool

    from oreal.verify.worker import init_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    receive = Connection(read_fd, writable=False)
    send = Connection(write_fd, readable=False)
    send_lock = threading.Lock()

    def reply(message: tuple[Any, ...]) -> None:
        with send_lock, contextlib.suppress(OSError):  # OSError: the caller is gone
            send.send(message)

    pool = ProcessPool(
        max_workers=config["workers"],
        initializer=init_worker,
        initargs=(config["memory_limit_mb"],),
        context=_context(config["start_method"]),
    )
    try:
        reply(("ready",))
        while (request := _recv_or_none(receive)) is not None:
            _serve_request(pool, reply, request)
    finally:
        pool.stop()
        pool.join()
