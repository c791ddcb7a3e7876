"""Baseline accuracy of the embedded SmolLM2-135M-Instruct, as quoted in the README.

Runs ``oreal eval embedded`` (greedy pass@1, bf16 autocast) on the first ``--limit`` problems of
MATH-500 and GSM8K in file order, then prints a markdown table with the wall time. Usage::

    python benchmarks/eval_smollm2.py --limit 50 --max-new-tokens 512 --threads 1 --out /tmp/smol

The command is printed first, so the numbers can be reproduced without this script.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default="math500,gsm8k")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--template", default="chat")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("eval-results/smollm2-baseline"))
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    command = [
        sys.executable, "-m", "oreal", "eval", "embedded",
        "--benchmarks", args.benchmarks,
        "--limit", str(args.limit),
        "--max-new-tokens", str(args.max_new_tokens),
        "--batch-size", str(args.batch_size),
        "--template", args.template,
        "--out", str(args.out),
    ]  # fmt: skip
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if args.resume:
        command.append("--resume")
    print("$", shlex.join(command[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start

    document = json.loads((args.out / "results.json").read_text())
    print(f"\nwall time {wall:.0f} s (including model load)\n")
    print("| benchmark | problems | pass@1 (greedy) | mean tokens | truncated | eval s |")
    print("|---|---|---|---|---|---|")
    for name, entry in document["benchmarks"].items():
        print(
            f"| {name} | first {entry['num_problems']} | {100 * entry['accuracy']:.1f}% | "
            f"{entry['mean_response_tokens']:.0f} | {100 * entry['truncation_rate']:.0f}% | "
            f"{entry['wall_time_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
