"""Per-phase time of one RL step on the demo model, written as JSON.

Phases, as the trainer runs them: generation (K rollouts for each prompt), scoring (the frozen
reference's log-probs, and the rollout policy's when PPO needs them), and the policy update
(forward with grad through the chunked log-probs, backward, AdamW step from
``oreal.optim.make_optimizer``). The update trains on every rollout with random advantages, so
the number does not depend on how many groups a method keeps. Verification is timed by
benchmarks/verify_throughput.py. Run it with another checkout's code first on ``PYTHONPATH``
to time that code with this script (before/after comparisons).

    python benchmarks/step_time.py                      # embedded SmolLM2-135M, bf16 autocast
    python benchmarks/step_time.py --no-bf16            # fp32 compute, for comparison
    python benchmarks/step_time.py --param-dtype bfloat16   # bf16 copies of fp32 weights
    python benchmarks/step_time.py --model PATH --prompts 8 --k 8 --max-new-tokens 64
    PYTHONPATH=/path/to/old/checkout python benchmarks/step_time.py --out /tmp/before.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

try:  # oreal train's OpenMP setting (GOMP_SPINCOUNT), before torch loads
    from oreal.cli import configure_native_libraries

    configure_native_libraries(os.environ)
except ImportError:  # an older checkout on PYTHONPATH (before/after comparisons)
    pass
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="steps timed (after a warm-up)")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 compute instead of bf16")
    parser.add_argument(
        "--param-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="model.param_dtype: bf16 autocast over fp32 weights, or bf16 copies of them",
    )
    parser.add_argument("--backend", choices=("hf", "fast"), default="hf", help="rollout engine")
    parser.add_argument("--kl-coef", type=float, default=0.01, help="0: no reference model")
    parser.add_argument("--out", default="benchmarks/results/step_time.json")
    args = parser.parse_args()

    import oreal
    from oreal.algorithms import algorithm_params
    from oreal.batch import pad_rollouts
    from oreal.data import load_problems, render_prompt
    from oreal.models import load_policy
    from oreal.models.logprobs import batch_logprobs
    from oreal.optim import make_optimizer
    from oreal.rollout import FastGenerator, HFGenerator, SamplingParams
    from oreal.runtime import Runtime
    from oreal.train.config import OptimConfig
    from oreal.train.update import policy_update

    autocast = not args.no_bf16
    if args.param_dtype == "bfloat16" and args.no_bf16:
        parser.error("--param-dtype bfloat16 computes in bf16: drop --no-bf16")
    # passed only when set, so that an older checkout on PYTHONPATH runs the default
    precision = {"param_dtype": torch.bfloat16} if args.param_dtype == "bfloat16" else {}
    started = time.perf_counter()
    policy, tokenizer = load_policy(args.model)
    load_seconds = time.perf_counter() - started
    reference = load_policy(args.model)[0] if args.kl_coef > 0 else None
    if reference is not None and precision:  # stored as the policy computes (buffers fp32)
        for param in reference.parameters():
            param.data = param.data.to(torch.bfloat16)
    engine = HFGenerator if args.backend == "hf" else FastGenerator
    generator = engine(policy, tokenizer, max_batch_size=args.prompts * args.k)
    generator.autocast = autocast
    runtime = Runtime.from_env("cpu")
    optimizer, _ = make_optimizer(policy.parameters(), OptimConfig(lr=1e-6), args.repeats + 1)
    # REINFORCE loss, token mean, k3 KL (none with --kl-coef 0)
    params = algorithm_params("rloo", kl_coef=args.kl_coef)
    problems = load_problems(f"synthetic:arithmetic?n={args.prompts * (args.repeats + 1)}&seed=0")
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)

    loadavg_before = os.getloadavg()
    steps = []
    for repeat in range(args.repeats + 1):
        chunk = problems[repeat * args.prompts : (repeat + 1) * args.prompts]
        prompts = [render_prompt(p, tokenizer, "boxed_short") for p in chunk]
        tick = time.perf_counter()
        rollouts = generator.generate(prompts, sampling, args.k)
        generate_s = time.perf_counter() - tick
        pairs = [(o.prompt_ids, o.response_ids) for o in rollouts]
        tensors = pad_rollouts(pairs, generator.pad_token_id)

        tick = time.perf_counter()
        if reference is not None:
            tensors.ref_logprobs = batch_logprobs(
                reference,
                tensors,
                micro_batch_size=args.micro_batch_size,
                autocast=autocast,
                runtime=runtime,
                **precision,
            )
        score_s = time.perf_counter() - tick

        advantages = torch.randn(len(rollouts), generator=torch.Generator().manual_seed(repeat))
        tensors.advantages = advantages
        tensors.positive = advantages > 0
        tensors.pass_rate = torch.full_like(advantages, 0.5)
        tick = time.perf_counter()
        policy_update(
            policy,
            optimizer,
            params,
            tensors,
            runtime=runtime,
            micro_batch_size=args.micro_batch_size,
            autocast=autocast,
            max_new_tokens=args.max_new_tokens,
            **precision,
        )
        train_s = time.perf_counter() - tick
        response_tokens = int(tensors.loss_mask.sum())
        steps.append(
            {
                "generate_s": generate_s,
                "reference_logprobs_s": score_s,
                "train_s": train_s,
                "sequences": len(rollouts),
                "response_tokens": response_tokens,
                "padded_sequence_length": int(tensors.input_ids.shape[1]),
                "generate_tokens_per_s": response_tokens / generate_s,
                "reference_tokens_per_s": response_tokens / score_s if score_s > 1e-3 else None,
                "train_tokens_per_s": response_tokens / train_s,
            }
        )
        print(json.dumps({"repeat": repeat, **steps[-1]}))

    timed = steps[1:]  # the first step pays one-off costs (allocator, kernel selection)
    median = {
        key: statistics.median(step[key] for step in timed)
        for key in timed[0]
        if timed[0][key] is not None
    }
    result = {
        "benchmark": "step_time",
        "command": "python benchmarks/step_time.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "compute": (
            "bf16 copies of fp32 weights"
            if precision
            else "bf16 autocast, fp32 weights"
            if autocast
            else "fp32"
        ),
        "prompts": args.prompts,
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "micro_batch_size": args.micro_batch_size,
        "rollout_backend": args.backend,
        "kl_coef": args.kl_coef,
        "optimizer": {"fused": bool(optimizer.defaults.get("fused"))},
        "oreal_code": str(Path(oreal.__file__).parent),
        "model_load_s": load_seconds,
        "median_of_timed_steps": median,
        "steps": steps,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before_after": [loadavg_before, os.getloadavg()],
        "note": "shared 2-core machine: other jobs may have run at the same time (loadavg)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(json.dumps(median, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
