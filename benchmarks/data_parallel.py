"""Data parallelism on this machine: equality with one process, and step time.

    python benchmarks/data_parallel.py equality            # max |1-rank - 2-rank| weights
    python benchmarks/data_parallel.py step-time --steps 3 # the demo preset, 1 vs 2 ranks

``equality`` trains a tiny model on scripted rollouts (tests/helpers/dp_worker.py: OREAL,
OREAL + token RM, GRPO) with one process and with ``torchrun --nproc_per_node 2`` and writes the
max abs weight difference of each. ``step-time`` runs ``oreal train`` on the demo preset (or
``--config``) for ``--steps`` steps with 1 and 2 ranks, one thread each, and reads the step times
from each run's metrics.jsonl. JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "helpers" / "dp_worker.py"
VARIANTS = {"oreal": 2, "oreal_token_rm": 3, "grpo": 2}


def launch(ranks: int, arguments: list[str], port: int = 29533) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *arguments]
    if ranks > 1:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
                   f"--master_port={port}", *arguments]  # fmt: skip
    tick = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - tick


def equality() -> dict:
    from safetensors.torch import load_file

    from oreal.models import save_tiny

    root = Path(tempfile.mkdtemp(prefix="oreal-dp-"))
    model = save_tiny(root / "model")
    for ranks in (1, 2):
        launch(ranks, [str(WORKER), str(model), str(root / str(ranks)), *VARIANTS])
    result = {}
    for variant, steps in VARIANTS.items():
        name = f"checkpoints/step-{steps:06d}/policy/model.safetensors"
        one, two = (
            load_file(str(root / "1" / variant / name)),
            load_file(str(root / "2" / variant / name)),
        )
        result[variant] = max(float((one[k] - two[k]).abs().max()) for k in one)
    shutil.rmtree(root, ignore_errors=True)
    return {"max_abs_weight_difference_1_vs_2_ranks": result}


def step_time(config: str, steps: int, overrides: list[str]) -> dict:
    root = Path(tempfile.mkdtemp(prefix="oreal-dp-time-"))
    runs = {}
    for ranks in (1, 2):
        run = root / f"{ranks}-ranks"
        arguments = [
            "-m", "oreal", "train", config, f"train.steps={steps}", "data.eval=null",
            f"train.run_dir={run}", "train.plot=false", "--threads", "1", *overrides,
        ]  # fmt: skip
        wall = launch(ranks, arguments)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        times = [r["step_time"] for r in records if "step_time" in r]
        runs[f"{ranks}_ranks"] = {
            "wall_s": wall,
            "step_time_s": times,
            "median_step_time_s": statistics.median(times),
            "generate_tokens_per_s": [r.get("generate_tokens_per_s") for r in records],
        }
    shutil.rmtree(root, ignore_errors=True)
    runs["speedup_2_over_1"] = (
        runs["1_ranks"]["median_step_time_s"] / runs["2_ranks"]["median_step_time_s"]
    )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["equality", "step-time"])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--override", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "equality":
        result = equality()
    else:
        result = step_time(args.config, args.steps, args.override)
    result["command"] = "python benchmarks/data_parallel.py " + " ".join(sys.argv[1:])
    out = args.out or ROOT / "benchmarks" / "results" / f"data_parallel_{args.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
