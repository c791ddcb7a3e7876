"""One RL step at one shape, in one run: transformers ``generate`` (the baseline), oreal's fast
CPU rollout path, the vLLM backend (when importable), oreal's whole RL step and TRL's
``GRPOTrainer`` step, written as JSON with the ratios printed.

    python benchmarks/rl_step.py                 # embedded SmolLM2-135M, 8 prompts x 8, 64 tokens
    python benchmarks/rl_step.py --parts oreal,trl --steps 3
    python benchmarks/rl_step.py --parts oreal,oreal_full_backward,trl

The shape (issue 10): the embedded SmolLM2-135M-Instruct, 8 prompts x 8 rollouts, 64 new
tokens at temperature 1, bf16 autocast, no KL (no reference model), one optimizer step per
step, micro-batches of 16 rows. Prompts are the same synthetic arithmetic problems rendered by
oreal's template for every part. Each part runs in its own process, one after the other (so one
library's process-wide settings cannot help or hurt another's); the generation parts reuse
``benchmarks/rollout_speed.py``. Step times are the median of steps 2..N (step 1 pays one-off
costs). TRL runs with ``gradient_checkpointing=False`` like oreal (its default is True, which
would make it slower) and ``beta=0`` (its default: no reference model). Every part gets
``GOMP_SPINCOUNT=2000`` (what ``oreal train`` sets) unless the caller set it or
``OMP_WAIT_POLICY``.

The machine this was written on has 2 cores and is shared: other jobs may run at the same time.
Each part records ``os.getloadavg()`` before and after; compare parts of the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARTS = ("hf", "fast", "vllm", "oreal", "oreal_full_backward", "trl")
DATA = "synthetic:arithmetic?n={n}&digits=1-2&ops=add,sub&seed=0&split=train"
TEMPLATE = "boxed_short"


def _problems(count: int) -> list[Any]:
    from oreal.data import load_problems

    return load_problems(DATA.format(n=count))[:count]


def _prompts(args: argparse.Namespace, tokenizer: Any) -> list[str]:
    from oreal.data import render_prompt

    return [render_prompt(p, tokenizer, TEMPLATE) for p in _problems(args.prompts)]


def _threads() -> dict[str, Any]:
    import torch

    return {"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}


def part_generate(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Generated tokens/s of one rollout backend: ``rollout_speed``'s runs, at our shape."""
    sys.path.insert(0, str(Path(__file__).parent))
    import rollout_speed

    from oreal.models import load_policy
    from oreal.rollout import FastGenerator, HFGenerator, SamplingParams

    model, tokenizer = load_policy(args.model)
    prompts = _prompts(args, tokenizer)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=0)
    if name == "vllm":
        bench = argparse.Namespace(
            repeats=args.repeats, vllm_memory=args.vllm_memory, vllm_eager=False, k=args.k
        )
        return {**rollout_speed._bench_vllm(bench, model, tokenizer, prompts, params), **_threads()}
    engine = HFGenerator if name == "hf" else FastGenerator
    generator = engine(model, tokenizer, max_batch_size=args.prompts * args.k)
    generator.generate(prompts, SamplingParams(max_new_tokens=4, seed=0), args.k)  # warm-up
    runs = [rollout_speed._run(generator, prompts, params, args.k) for _ in range(args.repeats)]
    summary = rollout_speed._summary(runs)
    summary["generate_s_median"] = statistics.median(r["generate_s"] for r in runs)
    return {**summary, **_threads()}


def part_oreal(args: argparse.Namespace) -> dict[str, Any]:
    """``Trainer.train_step`` timed from outside: rollouts, verification, update.

    With ``--full-backward`` every row runs its backward, as TRL's does: oreal otherwise runs
    rows with zero advantage (GRPO's all-correct and all-wrong groups) forward only, which is
    the same update for less work (docs/performance.md) but not the same work as TRL's step.
    """
    import torch

    import oreal.train.update
    from oreal.train import OrealConfig, Trainer

    if args.full_backward or args.part == "oreal_full_backward":
        oreal.train.update.rows_without_gradient = lambda _params, advantages: torch.zeros(
            advantages.shape[0], dtype=torch.bool
        )

    problems = _problems(args.prompts * args.steps)
    with tempfile.TemporaryDirectory() as run_dir:
        config = OrealConfig.model_validate(
            {
                "model": {"name_or_path": args.model, "bf16_autocast": True},
                "data": {"eval": None, "template": TEMPLATE},
                "rollout": {
                    "prompts_per_step": args.prompts,
                    "num_rollouts": args.k,
                    "max_new_tokens": args.new_tokens,
                    "temperature": 1.0,
                    "max_batch_size": args.prompts * args.k,
                },
                "algorithm": {"name": "grpo", "params": {"kl_coef": 0.0}},
                "train": {
                    "steps": args.steps,
                    "micro_batch_size": 16,
                    "run_dir": run_dir,
                    "plot": False,
                    "samples_per_step": 0,
                },
            }
        )
        trainer = Trainer(args=config, train_dataset=problems)
        steps = []
        try:
            for _ in range(args.steps):
                tick = time.perf_counter()
                record = trainer.train_step()
                wall = time.perf_counter() - tick
                keep = ("time_generate", "time_verify", "time_score", "time_train")
                steps.append({"step_s": wall, **{k: record[k] for k in keep if k in record}})
                print(f"oreal step: {wall:.1f} s {steps[-1]}", flush=True)
            backend = type(trainer.generator).__name__
            reference = trainer.reference is not None
        finally:
            trainer.close()
    return {
        "steps": steps,
        "step_s_median": statistics.median(s["step_s"] for s in steps[1:]),
        "generator": backend,
        "reference_model": reference,
        **_threads(),
    }


def part_trl(args: argparse.Namespace) -> dict[str, Any]:
    """TRL's ``GRPOTrainer`` on the same model, prompts and shape; a step is one optimizer step
    (its generation of all 64 completions included), timed by a callback."""
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from oreal.integrations.trl import oreal_accuracy
    from oreal.models import load_policy

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.times.append(time.perf_counter() - self.start)
            print(f"trl step: {self.times[-1]:.1f} s", flush=True)

    model, tokenizer = load_policy(args.model)
    problems = _problems(args.prompts * args.steps)
    from oreal.data import render_prompt

    dataset = Dataset.from_dict(
        {
            "prompt": [render_prompt(p, tokenizer, TEMPLATE) for p in problems],
            "answer": [p.answer for p in problems],
        }
    )
    micro = min(16, args.prompts * args.k)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = Path(folder) / "model"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        del model
        config = GRPOConfig(
            output_dir=str(Path(folder) / "out"),
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=args.prompts * args.k // micro,
            num_generations=args.k,
            max_completion_length=args.new_tokens,
            temperature=1.0,
            beta=0.0,
            max_steps=args.steps,
            learning_rate=1e-6,
            use_cpu=True,
            bf16=True,
            gradient_checkpointing=False,
            shuffle_dataset=False,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
        )
        timer = StepTimes()
        trainer = GRPOTrainer(
            model=str(model_dir),
            reward_funcs=[oreal_accuracy],
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.train()
    return {
        "step_s": timer.times,
        "step_s_median": statistics.median(timer.times[1:]),
        "trl": trl.__version__,
        "settings": {
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": args.prompts * args.k // micro,
            "gradient_checkpointing": False,
            "beta": 0.0,
            "bf16": True,
        },
        **_threads(),
    }


def run_part(args: argparse.Namespace, name: str) -> dict[str, Any]:
    before = os.getloadavg()
    tick = time.perf_counter()
    if name in ("oreal", "oreal_full_backward"):
        result = part_oreal(args)
    elif name == "trl":
        result = part_trl(args)
    else:
        result = part_generate(args, name)
    return {
        **result,
        "part_wall_s": time.perf_counter() - tick,
        "loadavg_before": before,
        "loadavg_after": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="RL steps per trainer (>= 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per engine")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--vllm-memory", type=float, default=0.2)
    parser.add_argument(
        "--full-backward",
        action="store_true",
        help="oreal runs every row's backward (TRL's work), zero-advantage rows included",
    )
    parser.add_argument("--part", help=argparse.SUPPRESS)  # run one part here (child process)
    parser.add_argument("--part-out", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/rl_step.json")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (step 1 is not timed)")
    if args.part:
        Path(args.part_out).write_text(json.dumps(run_part(args, args.part)))
        return

    import torch
    import transformers

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    results: dict[str, Any] = {
        "benchmark": "rl_step",
        "command": " ".join(["python", *sys.argv]),
        "shape": {
            "model": args.model,
            "prompts": args.prompts,
            "k": args.k,
            "new_tokens": args.new_tokens,
            "compute": "bf16 autocast, fp32 weights",
            "kl": 0.0,
            "micro_batch_size": 16,
        },
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "note": (
            "shared 2-core machine: other jobs may have run at the same time (see each part's "
            "loadavg); step medians are over steps 2..N"
        ),
        "parts": {},
    }
    base = [sys.executable, __file__, *sys.argv[1:]]
    # What `oreal train` sets before torch loads (oreal/cli): given to every part alike.
    env = dict(os.environ)
    if "OMP_WAIT_POLICY" not in env:
        env.setdefault("GOMP_SPINCOUNT", "2000")
    results["omp_wait_policy"] = env.get("OMP_WAIT_POLICY")
    results["gomp_spincount"] = env.get("GOMP_SPINCOUNT")
    for name in parts:
        if name == "vllm" and _vllm_missing():
            results["parts"][name] = {"skipped": "vllm is not importable in this environment"}
            print("vllm: skipped (not importable)")
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as handle:
            command = [*base, "--part", name, "--part-out", handle.name]
            done = subprocess.run(command, check=False, env=env)
            if done.returncode != 0:
                results["parts"][name] = {"failed": f"exit status {done.returncode}"}
                continue
            results["parts"][name] = json.loads(Path(handle.name).read_text())
    results["summary"] = _summary(results["parts"])
    for line in results["summary"]["lines"]:
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


def _vllm_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is None


def _summary(parts: dict[str, Any]) -> dict[str, Any]:
    rates = {
        name: part["tokens_per_s_median"]
        for name, part in parts.items()
        if "tokens_per_s_median" in part
    }
    steps = {name: part["step_s_median"] for name, part in parts.items() if "step_s_median" in part}
    summary: dict[str, Any] = {"generate_tokens_per_s": rates, "step_s": steps, "lines": []}
    for name, rate in rates.items():
        ratio = f" ({rate / rates['hf']:.2f}x transformers generate)" if "hf" in rates else ""
        summary["lines"].append(f"{name}: {rate:.0f} generated tok/s{ratio}")
    for name, seconds in steps.items():
        summary["lines"].append(f"{name} RL step: {seconds:.1f} s (median of steps 2..N)")
    for name in ("oreal", "oreal_full_backward"):
        if name in steps and "trl" in steps:
            summary[f"{name}_step_over_trl_step"] = steps[name] / steps["trl"]
            summary["lines"].append(
                f"{name} step / TRL step: {steps[name] / steps['trl']:.2f} (goal <= 0.33)"
            )
    return summary


if __name__ == "__main__":
    main()
