"""`oreal verify` on a 20k-row file with 5% hostile rows: wall time against its two halves, and
whether identical rows get identical verdicts. Written as JSON.

Usage::

    python benchmarks/verify_hostile.py --out benchmarks/results/verify_hostile.json
    # the code of another checkout (e.g. the commit before a fix), same rows and machine:
    python benchmarks/verify_hostile.py --code-root /tmp/before --label before --out ...

Rows (seeded, so every run and every checkout sees the same file):

* normal: MATH-500 reference solutions with their own gold (correct; mostly settled by the fast
  path) and, for ``--wrong-share`` of them, with another problem's gold (wrong; reaches sympy);
* hostile (``--hostile-share``): a solution whose final box is ``\\boxed{e^{10^{6}}}`` against
  one of five decimal golds. Comparing it with a float gold evaluates ``e^{10^6}`` to high
  precision (about 10 CPU seconds), so before the fix its verdict was ``timeout`` or
  ``mismatch`` depending on machine load. ``--hostile-answer`` takes another final box, e.g.
  one that no screen catches, to measure what a timeout costs.

Each repeat runs ``python -m oreal verify FILE --out`` on the whole file and on each half, in
fresh processes (pool start-up included), and reports ``full_s / (half1_s + half2_s)``: about 1
when a hostile row costs the same wherever it lands. Consistency: the number of groups of
identical (gold, response) rows that got more than one verdict, and the rows whose verdict in
the full run differs from the halves run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MATH500 = ROOT / "oreal" / "data" / "files" / "math500" / "test.jsonl"
HOSTILE_ANSWER = r"\boxed{e^{10^{6}}}"
HOSTILE_GOLDS = ("2.718", "3.5", "0.25", "12.75", "7.389")


def build_rows(
    n_rows: int, hostile_share: float, wrong_share: float, seed: int, hostile_answer: str
) -> list[dict]:
    with MATH500.open(encoding="utf-8") as handle:
        problems = [json.loads(line) for line in handle if line.strip()]
    rng = random.Random(seed)
    rows = []
    for index in range(n_rows):
        problem = rng.choice(problems)
        draw = rng.random()
        if draw < hostile_share:
            gold = HOSTILE_GOLDS[index % len(HOSTILE_GOLDS)]
            response = problem["solution"] + "\n\nSo the answer is " + hostile_answer
            rows.append({"id": index, "kind": "hostile", "gold": gold, "response": response})
        elif draw < hostile_share + wrong_share:
            gold = rng.choice(problems)["answer"]
            rows.append(
                {"id": index, "kind": "wrong", "gold": gold, "response": problem["solution"]}
            )
        else:
            gold = problem["answer"]
            rows.append(
                {"id": index, "kind": "correct", "gold": gold, "response": problem["solution"]}
            )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run_cli(code_root: Path, source: Path, out: Path, workers: int | None) -> float:
    """Wall seconds of one ``oreal verify`` process (start-up and pool start included)."""
    env = dict(os.environ, PYTHONPATH=str(code_root), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "oreal", "verify", str(source), "--out", str(out)]
    if workers:
        command += ["--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=source.parent, capture_output=True)
    return time.perf_counter() - start


def consistency(rows: list[dict]) -> dict[str, Any]:
    """Groups of identical hostile (gold, response) rows with more than one verdict."""
    groups: dict[tuple[str, str], set[tuple[bool, str]]] = defaultdict(set)
    for row in rows:
        if row["kind"] == "hostile":
            groups[(row["gold"], row["response"])].add((row["correct"], row["reason"]))
    return {
        "hostile_reasons": dict(Counter(r["reason"] for r in rows if r["kind"] == "hostile")),
        "hostile_groups": len(groups),
        "hostile_groups_with_several_verdicts": sum(len(v) > 1 for v in groups.values()),
    }


def summary(args: argparse.Namespace, rows: list[dict], repeats: list[dict]) -> dict[str, Any]:
    """The JSON written after every repeat (an interrupted run keeps what it measured)."""
    return {
        "benchmark": "verify_hostile",
        "label": args.label,
        "code_root": str(args.code_root),
        "command": " ".join(sys.argv),
        "rows": args.rows,
        "hostile_share": args.hostile_share,
        "wrong_share": args.wrong_share,
        "hostile_answer": args.hostile_answer,
        "kinds": dict(Counter(r["kind"] for r in rows)),
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "median_full_s": statistics.median(r["full_s"] for r in repeats),
        "median_halves_s": statistics.median(r["halves_s"] for r in repeats),
        "median_ratio_full_to_halves": statistics.median(
            r["ratio_full_to_halves"] for r in repeats
        ),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/verify_hostile.json")
    parser.add_argument("--code-root", type=Path, default=ROOT, help="checkout whose oreal runs")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--hostile-share", type=float, default=0.05)
    parser.add_argument("--wrong-share", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: usable CPUs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hostile-answer",
        default=HOSTILE_ANSWER,
        help="the hostile rows' final box; e.g. \\boxed{\\sum_{k=1}^{10^{5}} k^{k}}, which no "
        "screen catches and every check times out on",
    )
    args = parser.parse_args()

    rows = build_rows(
        args.rows, args.hostile_share, args.wrong_share, args.seed, args.hostile_answer
    )
    half = len(rows) // 2
    repeats = []
    with tempfile.TemporaryDirectory(prefix="verify_hostile_") as tmp:
        work = Path(tmp)
        files = {"full": rows, "half1": rows[:half], "half2": rows[half:]}
        for name, part in files.items():
            write_jsonl(work / f"{name}.jsonl", part)
        for _ in range(args.repeat):
            loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            seconds = {
                name: run_cli(
                    args.code_root.resolve(),
                    work / f"{name}.jsonl",
                    work / f"{name}.out.jsonl",
                    args.workers,
                )
                for name in files
            }
            full = read_jsonl(work / "full.out.jsonl")
            halves = read_jsonl(work / "half1.out.jsonl") + read_jsonl(work / "half2.out.jsonl")
            differing = sum(
                (a["correct"], a["reason"]) != (b["correct"], b["reason"])
                for a, b in zip(full, halves, strict=True)
            )
            repeats.append(
                {
                    "loadavg_1m_before": loadavg,
                    "full_s": round(seconds["full"], 2),
                    "halves_s": round(seconds["half1"] + seconds["half2"], 2),
                    "ratio_full_to_halves": round(
                        seconds["full"] / (seconds["half1"] + seconds["half2"]), 3
                    ),
                    "rows_differing_full_vs_halves": differing,
                    "full": consistency(full),
                    "halves": consistency(halves),
                }
            )
            print(json.dumps(repeats[-1]), flush=True)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            result = summary(args, rows, repeats)
            out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "repeats"}, indent=2))


if __name__ == "__main__":
    main()
