"""Checks/s and accuracy of oreal's batch verifier vs plain math-verify, written as JSON.

Usage::

    python benchmarks/verify_throughput.py --out benchmarks/results/verify_throughput.json

Pairs: MATH-500 reference solutions (gold = ``answer``, response = ``solution``), read directly
from ``oreal/data/files/math500/test.jsonl``; every pair is correct, so accuracy is the share
judged correct. oreal runs ``Verifier.verify_batch`` on a warm pool (pool start-up is reported
separately) for ``--repeat`` batches of all pairs; plain math-verify runs ``parse`` + ``verify``
on the same pairs once, single process, as its README shows.

A second scenario, ``slow_path``, pairs each solution with the gold of another problem, so that
almost no pair is settled by oreal's fast path and the checks reach sympy in the worker pool:
it measures the pool itself. Both verifiers' verdicts are compared there (they should agree
that almost all pairs are wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MATH500 = ROOT / "oreal" / "data" / "files" / "math500" / "test.jsonl"


def load_pairs(limit: int | None) -> list[tuple[str, str]]:
    with MATH500.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    pairs = [(row["answer"], row["solution"]) for row in rows]
    return pairs[:limit] if limit else pairs


def run_oreal(
    pairs: list[tuple[str, str]], repeat: int, workers: int | None, mode: str
) -> dict[str, Any]:
    from oreal.verify import Verifier
    from oreal.verify.rules import Job, prepare

    golds = [g for g, _ in pairs]
    responses = [r for _, r in pairs]
    fast = sum(not isinstance(prepare(g, r, mode=mode), Job) for g, r in pairs)
    with Verifier(mode=mode, workers=workers) as verifier:
        start = time.perf_counter()
        verifier.equivalent("x + 1", "1 + x")  # not settled by rules: starts and warms the pool
        pool_start_s = time.perf_counter() - start
        start = time.perf_counter()
        verdicts = []
        for _ in range(repeat):
            verdicts = verifier.verify_batch(golds, responses)
        seconds = time.perf_counter() - start
        worker_count = verifier.workers
    checks = len(pairs) * repeat
    return {
        "mode": mode,
        "workers": worker_count,
        "pool_start_s": round(pool_start_s, 3),
        "checks": checks,
        "seconds": round(seconds, 3),
        "checks_per_s": round(checks / seconds, 1),
        "judged_correct": round(sum(v.correct for v in verdicts) / len(pairs), 4),
        "decided_without_pool": round(fast / len(pairs), 4),
        "reasons": dict(Counter(v.reason for v in verdicts)),
        "verdicts": [v.correct for v in verdicts],
    }


def run_math_verify(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    start = time.perf_counter()
    verdicts = []
    for gold, response in pairs:
        verdicts.append(bool(verify(parse(f"${gold}$"), parse(response))))
    seconds = time.perf_counter() - start
    return {
        "workers": 1,
        "checks": len(pairs),
        "seconds": round(seconds, 3),
        "checks_per_s": round(len(pairs) / seconds, 1),
        "judged_correct": round(sum(verdicts) / len(pairs), 4),
        "verdicts": verdicts,
    }


def _report(run: dict[str, Any], *, accuracy: bool) -> dict[str, Any]:
    out = {k: v for k, v in run.items() if k != "verdicts"}
    if accuracy:
        out["accuracy"] = out.pop("judged_correct")
    return out


def write_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/verify_throughput.json")
    parser.add_argument("--repeat", type=int, default=4, help="timed oreal batches of all pairs")
    parser.add_argument("--workers", type=int, default=None, help="default: usable CPUs")
    parser.add_argument("--mode", default="strict", choices=["strict", "lenient"])
    parser.add_argument("--limit", type=int, default=None, help="use the first N pairs only")
    parser.add_argument(
        "--slow-pairs", type=int, default=200, help="pairs in the slow-path scenario (0: skip)"
    )
    args = parser.parse_args()

    pairs = load_pairs(args.limit)
    ours = run_oreal(pairs, args.repeat, args.workers, args.mode)
    theirs = run_math_verify(pairs)
    result: dict[str, Any] = {
        "benchmark": "verify_throughput",
        "pairs": "MATH-500 reference solutions (gold=answer, response=solution)",
        "n_pairs": len(pairs),
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        # Every reference solution is correct, so accuracy is the share judged correct.
        "oreal": _report(ours, accuracy=True),
        "math_verify": _report(theirs, accuracy=True),
        "speedup": round(ours["checks_per_s"] / theirs["checks_per_s"], 1),
    }
    if args.slow_pairs:
        base = pairs[: args.slow_pairs]
        shifted = [(base[(i + 1) % len(base)][0], base[i][1]) for i in range(len(base))]
        slow_ours = run_oreal(shifted, 1, args.workers, args.mode)
        slow_theirs = run_math_verify(shifted)
        agree = sum(
            a == b for a, b in zip(slow_ours["verdicts"], slow_theirs["verdicts"], strict=True)
        )
        result["slow_path"] = {
            "pairs": "solution i with the gold of problem i+1 (mostly wrong; reaches sympy)",
            "oreal": _report(slow_ours, accuracy=False),
            "math_verify": _report(slow_theirs, accuracy=False),
            "verdict_agreement": round(agree / len(shifted), 4),
        }
    write_atomic(Path(args.out), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
