"""One RL step (generation + update) on an idle machine and beside one CPU-bound busy loop.

    python benchmarks/step_load.py --out benchmarks/results/step_load.json
    python benchmarks/step_load.py --settings "GOMP_SPINCOUNT=2000" "OMP_WAIT_POLICY=PASSIVE"

Each setting (environment variables for a fresh process: libgomp reads its wait policy once,
when torch loads it) runs ``benchmarks/step_time.py --backend fast --kl-coef 0`` (8 prompts x
8 samples x 64 new tokens, embedded model, bf16, no reference model) twice per round: without
and with one ``while True: pass`` process started for the timed part. Idle and busy runs
alternate, so both see the same background load of this shared machine; the load average of
each run is recorded. The figure of issue 10 is busy / idle of the whole step's median time.
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

#: What ``oreal train`` sets (oreal/cli/__init__.py), and the settings it was chosen over.
DEFAULT_SETTINGS = [
    "GOMP_SPINCOUNT=2000",
    "OMP_WAIT_POLICY=PASSIVE",
    "OMP_NUM_THREADS=1 GOMP_SPINCOUNT=2000",
]
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def _one(setting: str, busy: bool, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    env.update(item.split("=", 1) for item in setting.split())
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [
                sys.executable,
                str(Path(__file__).with_name("step_time.py")),
                "--backend",
                "fast",
                "--kl-coef",
                "0",
                "--repeats",
                str(args.repeats),
                "--out",
                out.name,
            ]
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=args.timeout)
            result = json.loads(Path(out.name).read_text())
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    median = result["median_of_timed_steps"]
    return {
        "step_s": median["generate_s"] + median["train_s"],
        "generate_s": median["generate_s"],
        "train_s": median["train_s"],
        "generate_tokens_per_s": median["generate_tokens_per_s"],
        "train_tokens_per_s": median["train_tokens_per_s"],
        "loadavg_before_after": result["loadavg_before_after"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=1, help="idle/busy pairs per setting")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    parser.add_argument("--out", default="benchmarks/results/step_load.json")
    args = parser.parse_args()

    rows: list[dict] = []
    for setting in args.settings:
        idle, busy = [], []
        for _ in range(args.rounds):
            idle.append(_one(setting, False, args))
            busy.append(_one(setting, True, args))
        row = {"setting": setting, "idle": idle, "busy": busy}
        for phase in ("step_s", "generate_s", "train_s"):
            ratio = statistics.median(b[phase] for b in busy) / statistics.median(
                i[phase] for i in idle
            )
            row[f"busy_over_idle_{phase}"] = ratio
        rows.append(row)
        print(
            f"{setting:45s} step idle {statistics.median(i['step_s'] for i in idle):6.1f} s"
            f" busy {statistics.median(b['step_s'] for b in busy):6.1f} s"
            f" -> {row['busy_over_idle_step_s']:.2f}x"
            f" (generate {row['busy_over_idle_generate_s']:.2f}x,"
            f" update {row['busy_over_idle_train_s']:.2f}x)",
            flush=True,
        )
        _write(rows, args)  # after every setting: a long run that is cut keeps what it measured
    print(f"wrote {args.out}")


def _write(rows: list[dict], args: argparse.Namespace) -> None:
    result = {
        "benchmark": "step_load",
        "command": "python benchmarks/step_load.py " + " ".join(sys.argv[1:]),
        "shape": "8 prompts x 8 samples x 64 new tokens, embedded model, bf16, kl 0, fast engine",
        "busy": "one `while True: pass` process during the busy runs",
        "cores": os.cpu_count(),
        "note": "shared 2-core machine: other jobs may have run too (loadavg per run)",
        "settings": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
