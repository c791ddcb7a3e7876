"""Where the demo's resident memory goes: peak RSS per phase and live tensors by owner.

Runs ``oreal train`` in this process (the same config resolution as the CLI: the demo preset,
then ``key=value`` overrides) while a thread samples the process RSS every 10 ms and labels
each sample with the trainer phase running at that moment (build, eval, rollout, verify,
reference, update, sync, checkpoint). After every phase it also sums the bytes of the tensors
the run holds, by owner (distinct storages counted once): the policy's weights, its
gradients, the AdamW state, the frozen reference, the cached low-precision head copies, the
rollout engine's weights and its KV cache. RSS minus those is everything else: activations
live at that moment, the allocator's retained free memory, torch/transformers/Python.

    python benchmarks/memory_breakdown.py --out /tmp/mem.json                 # the demo, 11 steps
    python benchmarks/memory_breakdown.py --out /tmp/mem.json train.steps=4   # shorter
    MALLOC_ARENA_MAX=2 python benchmarks/memory_breakdown.py ...               # allocator settings

``train.run_dir`` defaults to a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from oreal.cli import configure_native_libraries

configure_native_libraries(os.environ)  # as `oreal train` does, before torch loads
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import psutil  # noqa: E402  (after the native-library settings)
import torch  # noqa: E402

MB = 1024 * 1024


class PhaseSampler:
    """RSS sampled on a thread; each sample goes to the phase that is current."""

    def __init__(self, interval: float = 0.01) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self.window = 0  # the peak since :meth:`open_window`
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> int:
        rss = self.process.memory_info().rss
        phase = self.phase
        self.peaks[phase] = max(self.peaks.get(phase, 0), rss)
        self.window = max(self.window, rss)
        return rss

    def open_window(self) -> None:
        self.window = self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _storages(tensors: Iterable[torch.Tensor | None], seen: set[int]) -> int:
    """Bytes of the distinct storages of ``tensors`` not yet in ``seen``."""
    total = 0
    for tensor in tensors:
        if tensor is None or not isinstance(tensor, torch.Tensor):
            continue
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in seen or storage.nbytes() == 0:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def _engine_tensors(generator: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The fast engine's weight tensors and its KV cache (empty for other engines)."""
    decoder = getattr(generator, "decoder", None)
    weights: list[torch.Tensor] = []
    if decoder is not None:
        for value in vars(decoder).values():
            items = value if isinstance(value, list) else [value]
            weights.extend(t for t in items if isinstance(t, torch.Tensor))
    cache = getattr(generator, "_cache", None)
    kv = [cache.keys, cache.values] if cache is not None else []
    return weights, kv


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def heap_mb() -> dict[str, float]:
    """glibc's view (``mallinfo2``, all arenas): heap bytes in use, free inside the heap
    (resident until reused or trimmed), and mapped blocks; empty off glibc 2.33+."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return {}
    info = libc.mallinfo2()
    return {
        "heap_in_use": round(info.uordblks / MB, 1),
        "heap_free": round(info.fordblks / MB, 1),
        "mmapped": round(info.hblkhd / MB, 1),
    }


def owners(trainer: Any) -> dict[str, float]:
    """MB of live tensors by owner (module docstring); a storage counts for its first owner."""
    seen: set[int] = set()
    policy = trainer.policy
    params = list(policy.parameters())
    result = {"policy_weights": _storages(params, seen)}
    result["policy_grads"] = _storages((p.grad for p in params), seen)
    state = trainer.optimizer.state.values()
    result["optimizer_state"] = _storages((v for s in state for v in s.values()), seen)
    reference = trainer.reference
    if reference is not None and not reference.shared_with_policy:
        result["reference_weights"] = _storages(reference.module.parameters(), seen)
    heads = [getattr(p, "_oreal_low_precision", None) for p in params]
    if reference is not None:
        heads += [getattr(p, "_oreal_low_precision", None) for p in reference.module.parameters()]
    result["cached_low_precision_heads"] = _storages((h[1] for h in heads if h), seen)
    if trainer.token_rm is not None:
        rm = trainer.token_rm
        rm_params = list(rm.model.parameters())
        result["token_rm_weights"] = _storages(rm_params, seen)
        result["token_rm_grads"] = _storages((p.grad for p in rm_params), seen)
        rm_state = rm.optimizer.state.values()
        result["token_rm_optimizer_state"] = _storages(
            (v for s in rm_state for v in s.values()), seen
        )
    weights, kv = _engine_tensors(getattr(trainer.generator, "_engine", trainer.generator))
    result["engine_weights"] = _storages(weights, seen)
    result["engine_kv_cache"] = _storages(kv, seen)
    return {k: round(v / MB, 1) for k, v in result.items()}


def _wrap(obj: Any, name: str, phase: str, sampler: PhaseSampler, log: list[dict]) -> None:
    """Run ``obj.name`` under ``phase``; afterwards record RSS and tensors by owner."""
    original: Callable[..., Any] = getattr(obj, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        outer = sampler.phase
        sampler.phase = phase
        sampler.open_window()
        try:
            return original(*args, **kwargs)
        finally:
            sampler.sample()
            sampler.phase = outer
            entry = {
                "after": phase,
                "step": obj.step,
                "peak_mb": round(sampler.window / MB, 1),
                "rss_mb": round(sampler.sample() / MB, 1),
            }
            entry["tensors_mb"] = owners(obj)
            entry["malloc_mb"] = heap_mb()
            log.append(entry)

    setattr(obj, name, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--config", default="demo", help="preset name or YAML path")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    from oreal.config_io import load_config
    from oreal.configs import resolve_config_path
    from oreal.train import Trainer
    from oreal.train.config import OrealConfig

    sampler = PhaseSampler()
    sampler.start()
    sampler.phase = "build"
    config = load_config(OrealConfig, resolve_config_path(args.config), list(args.overrides))
    if config.train.run_dir is None:
        config.train.run_dir = tempfile.mkdtemp(prefix="oreal-mem-")
    started = time.perf_counter()
    trainer = Trainer(args=config)
    log: list[dict] = [{"after": "build", "rss_mb": round(sampler.sample() / MB, 1)}]
    log[0]["tensors_mb"] = owners(trainer)
    sampler.phase = "other"
    for name, phase in (
        ("evaluate", "eval"),
        ("rollouts", "rollout"),
        ("score_tokens", "reference"),
        ("update", "update"),
        ("_sync_generator", "sync"),
        ("save", "checkpoint"),
    ):
        _wrap(trainer, name, phase, sampler, log)
    summary = trainer.train()
    seconds = time.perf_counter() - started
    sampler.stop()
    peaks = {k: round(v / MB, 1) for k, v in sampler.peaks.items()}
    result = {
        "command": "python benchmarks/memory_breakdown.py " + " ".join(args.overrides),
        "config": args.config,
        "overrides": args.overrides,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_end": os.getloadavg(),
        "seconds": round(seconds, 1),
        "summary": summary,
        "peak_rss_mb_by_phase": peaks,
        "peak_rss_mb": max(peaks.values()),
        "ru_maxrss_mb": round(
            __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024,
            1,
        ),
        "log": log,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("peak_rss_mb_by_phase", "ru_maxrss_mb")}, indent=1))
    last_update = [e for e in log if e["after"] == "update"]
    if last_update:
        print(json.dumps(last_update[-1], indent=1))


if __name__ == "__main__":
    main()
