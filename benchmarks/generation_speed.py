"""Generated tokens/s of HFGenerator with bf16 autocast vs fp32, written as JSON.

Usage::

    python benchmarks/generation_speed.py --model embedded --batch 64 --new-tokens 64 \
        --out benchmarks/results/generation_speed.json

Each mode runs one warm-up generation (oneDNN kernel selection, allocator warm-up) and then
``--repeats`` timed ones; eos is not suppressed, so tokens/s counts real response tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from oreal.models import load_policy
from oreal.rollout import HFGenerator, SamplingParams

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=64, help="prompts per generate call")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default="benchmarks/results/generation_speed.json")
    args = parser.parse_args()
    if args.threads > 0:
        # On a shared/oversubscribed CPU, OpenMP with more threads than free cores can be ~10x
        # slower than a single thread; this makes the setting explicit and recorded.
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    model, tokenizer = load_policy(args.model)
    load_s = time.perf_counter() - start
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(args.batch)
    ]
    params = SamplingParams(
        max_new_tokens=args.new_tokens, temperature=args.temperature, top_p=1.0, seed=0
    )
    results: dict[str, object] = {
        "model": args.model,
        "load_s": load_s,
        "batch": args.batch,
        "max_new_tokens": args.new_tokens,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "device": str(next(model.parameters()).device),
        "modes": {},
    }
    for name, autocast in (("bf16_autocast", True), ("fp32", False)):
        gen = HFGenerator(model, tokenizer, max_batch_size=args.batch, autocast=autocast)
        gen.generate(prompts[: min(8, args.batch)], SamplingParams(max_new_tokens=4))  # warm-up
        runs = []
        for _ in range(args.repeats):
            batch = gen.generate(prompts, params)
            runs.append(batch.stats)
        tokens = sum(r["generated_tokens"] for r in runs)
        seconds = sum(r["generate_s"] for r in runs)
        results["modes"][name] = {  # type: ignore[index]
            "tokens_per_s": tokens / seconds,
            "generated_tokens": tokens,
            "seconds": seconds,
            "truncated_frac": sum(r["truncated_frac"] for r in runs) / len(runs),
        }
        rate = tokens / seconds
        print(f"{name}: {rate:.1f} generated tokens/s ({tokens:.0f} in {seconds:.1f} s)")
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
