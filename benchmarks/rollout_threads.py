"""Fast-path decode speed vs thread count and OpenMP wait policy, idle and beside a CPU hog.

    python benchmarks/rollout_threads.py --out benchmarks/results/rollout_threads.json

Each configuration runs ``benchmarks/rollout_speed.py --backends fast`` in a fresh process
(``OMP_WAIT_POLICY`` is read once, when torch's OpenMP runtime starts, so it cannot be changed
inside one process), with ``--compete 0`` and ``--compete 1``. Idle and busy runs of a setting
alternate so that both see the same background load of this shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = [
    {"threads": 2, "OMP_WAIT_POLICY": None},
    {"threads": 2, "OMP_WAIT_POLICY": "PASSIVE"},
    {"threads": 1, "OMP_WAIT_POLICY": None},
]


def _one(setting: dict, compete: int, args: argparse.Namespace) -> float | None:
    """Median tok/s of one process, or None when it ran past ``--timeout`` (a collapse)."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if setting["OMP_WAIT_POLICY"]:
        env["OMP_WAIT_POLICY"] = setting["OMP_WAIT_POLICY"]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            str(Path(__file__).with_name("rollout_speed.py")),
            "--backends",
            "fast",
            "--repeats",
            str(args.repeats),
            "--threads",
            str(setting["threads"]),
            "--compete",
            str(compete),
            "--new-tokens",
            str(args.new_tokens),
            "--out",
            out.name,
        ]
        try:
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return None
        result = json.loads(Path(out.name).read_text())
    return float(result["backends"]["fast"]["tokens_per_s_median"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed generations per process")
    parser.add_argument("--rounds", type=int, default=2, help="idle/busy pairs per setting")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per process")
    parser.add_argument("--out", default="benchmarks/results/rollout_threads.json")
    args = parser.parse_args()
    rows = []
    for setting in SETTINGS:
        idle, busy = [], []
        for _ in range(args.rounds):
            idle.append(_one(setting, 0, args))
            busy.append(_one(setting, 1, args))
        # A timed-out run counts as 0 tok/s: the median then says "collapsed".
        idle_median = statistics.median(v or 0.0 for v in idle)
        busy_median = statistics.median(v or 0.0 for v in busy)
        row = {
            **setting,
            "idle_tokens_per_s": idle,
            "busy_tokens_per_s": busy,
            "idle_median": idle_median,
            "busy_median": busy_median,
            "slowdown_busy_vs_idle": idle_median / busy_median if busy_median else None,
        }
        rows.append(row)
        print(
            f"threads={setting['threads']} wait={setting['OMP_WAIT_POLICY'] or 'default'}: "
            f"idle {idle} tok/s, one hog {busy} tok/s (None: past --timeout)",
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "rollout_threads",
                "command": " ".join(["python", *sys.argv]),
                "shape": f"8 prompts x 8 samples x {args.new_tokens} new tokens, embedded, fast",
                "timeout_s": args.timeout,
                "note": "shared 2-core machine: other engineers' jobs ran as well",
                "settings": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
