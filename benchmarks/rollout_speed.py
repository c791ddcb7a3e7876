"""Generated tokens/s of the rollout backends at one shape, in one run: transformers ``generate``
(HFGenerator, the baseline), oreal's fast CPU path (FastGenerator) and vLLM (if importable).

    python benchmarks/rollout_speed.py                          # 8 prompts x 8 samples x 64 tokens
    python benchmarks/rollout_speed.py --backends fast --compete 1 --out /tmp/x.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/rollout_speed.py --threads 2  # passive waiting

HF and fast runs alternate (hf, fast, hf, fast, ...) after one warm-up each, so both see the
same background load; vLLM runs last (its engine pins threads for the whole process). Sampling
is at temperature 1 without eos suppression, so tokens/s counts real response tokens.
``--compete N`` starts N CPU-bound busy loops for the timed part (a busy machine); the load
average before and after is recorded, because this machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTIONS = [
    "What is 17 * 23? Show your work.",
    "Solve for x: 3x + 7 = 25.",
    "A train travels 60 km in 45 minutes. What is its speed in km/h?",
    "What is the sum of the first 20 positive integers?",
    "Simplify (x^2 - 9) / (x - 3).",
    "How many primes are there below 30?",
    "If a rectangle has perimeter 30 and width 5, what is its area?",
    "Compute 2^10 - 10^2.",
]
BUSY_LOOP = "while True: pass"


def _run(generator, prompts, params, k) -> dict[str, float]:
    batch = generator.generate(prompts, params, k)
    return {
        key: float(batch.stats[key]) for key in ("tokens_per_s", "generated_tokens", "generate_s")
    }


def _summary(runs: list[dict[str, float]]) -> dict[str, object]:
    return {
        "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8, help="samples per prompt")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="hf,fast,vllm")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--compete", type=int, default=0, help="busy-loop processes to run")
    parser.add_argument("--vllm-eager", action="store_true", help="vLLM enforce_eager")
    parser.add_argument("--vllm-memory", type=float, default=0.2, help="vLLM memory fraction")
    parser.add_argument("--out", default="benchmarks/results/rollout_speed.json")
    args = parser.parse_args()

    from oreal.cli import configure_native_libraries

    configure_native_libraries(os.environ)  # oreal train's settings, before torch loads
    import torch
    import transformers

    from oreal.models import load_policy
    from oreal.rollout import FastGenerator, HFGenerator, SamplingParams

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    model, tokenizer = load_policy(args.model)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(args.prompts)
    ]
    rows = args.prompts * args.k
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=0)
    warm = SamplingParams(max_new_tokens=4, temperature=1.0, seed=0)
    generators = {}
    if "hf" in backends:
        generators["hf"] = HFGenerator(model, tokenizer, max_batch_size=rows)
    if "fast" in backends:
        generators["fast"] = FastGenerator(model, tokenizer, max_batch_size=rows)
    for generator in generators.values():
        generator.generate(prompts, warm, args.k)

    competitors = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.compete)]
    results: dict[str, object] = {
        "benchmark": "rollout_speed",
        "command": " ".join(["python", *sys.argv]),
        "model": args.model,
        "shape": {
            "prompts": args.prompts,
            "k": args.k,
            "rows": rows,
            "new_tokens": args.new_tokens,
        },
        "sampling": "temperature 1.0, top_p 1, top_k 0, eos not suppressed",
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "competing_busy_processes": args.compete,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "note": "shared 2-core machine: other engineers' jobs ran too (see loadavg)",
        "loadavg_before": os.getloadavg(),
        "backends": {},
    }
    try:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in generators}
        for _ in range(args.repeats):
            for name, generator in generators.items():
                runs[name].append(_run(generator, prompts, params, args.k))
                print(f"{name}: {runs[name][-1]['tokens_per_s']:.0f} tok/s", flush=True)
        for name, name_runs in runs.items():
            results["backends"][name] = _summary(name_runs)  # type: ignore[index]
        if "vllm" in backends:
            results["backends"]["vllm"] = _bench_vllm(args, model, tokenizer, prompts, params)  # type: ignore[index]
    finally:
        for process in competitors:
            process.kill()
            process.wait()
    results["loadavg_after"] = os.getloadavg()

    medians = {
        name: entry["tokens_per_s_median"]  # type: ignore[index]
        for name, entry in results["backends"].items()  # type: ignore[union-attr]
        if "tokens_per_s_median" in entry
    }
    if "hf" in medians:
        results["ratio_to_hf"] = {name: rate / medians["hf"] for name, rate in medians.items()}
    for name, rate in medians.items():
        ratio = f" ({rate / medians['hf']:.2f}x hf)" if "hf" in medians else ""
        print(f"{name}: median {rate:.0f} generated tok/s{ratio}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def _bench_vllm(args, model, tokenizer, prompts, params) -> dict[str, object]:
    """vLLM engine start, then ``--repeats`` timed generations; skipped without vllm."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        return {"skipped": "vllm is not importable in this environment"}
    import tempfile

    from oreal.rollout.vllm import VLLMGenerator

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        start = time.perf_counter()
        generator = VLLMGenerator(
            folder,
            tokenizer,
            gpu_memory_utilization=args.vllm_memory,
            engine_kwargs={"enforce_eager": args.vllm_eager},
        )
        start_s = time.perf_counter() - start
        sync_start = time.perf_counter()
        generator.sync_weights(model)
        sync_s = time.perf_counter() - sync_start
        generator.generate(prompts, dataclasses.replace(params, max_new_tokens=4), args.k)
        runs = []
        for _ in range(args.repeats):
            runs.append(_run(generator, prompts, params, args.k))
            print(f"vllm: {runs[-1]['tokens_per_s']:.0f} tok/s", flush=True)
    return {**_summary(runs), "engine_start_s": start_s, "sync_weights_s": sync_s}


if __name__ == "__main__":
    main()
