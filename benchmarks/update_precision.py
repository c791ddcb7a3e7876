"""What the update's precision recipe costs: bf16 autocast over fp32 weights
(``model.param_dtype=float32``, the default) against bf16 working copies of the fp32 weights
(``model.param_dtype=bfloat16``, :mod:`oreal.models.precision`), on one batch, alternated in
one process.

Under autocast each micro-batch re-casts every fp32 weight to bf16, its backward casts every
weight gradient back and adds it into the fp32 ``.grad``, and the norms and the residual stream
run in fp32. With bf16 parameters (the recipe of FSDP2's ``MixedPrecisionPolicy(param_dtype=
bf16)`` and Megatron) the weights are cast once per optimizer step, everything between the
matmuls runs in bf16, each micro-batch's gradients are widened into fp32 sums, and AdamW steps
the fp32 weights. The log-prob columns say what the numbers lose: mean and max
|log p - log p_fp32| over the batch's response tokens, against an fp32 forward without
autocast, before any update, each recipe scored as the trainer scores it (``batch_logprobs``).

Loads the embedded SmolLM2-135M-Instruct, samples 8 prompts x 8 rollouts x 64 new tokens with
the fast engine (temperature 1, seed 0), then times ``policy_update`` (RLOO's policy
gradient, no KL, random advantages, as ``benchmarks/step_time.py``) for each recipe and
micro-batch size, in turn, ``--rounds`` times after one warm-up each.
``results/update_precision_prototype.json`` holds an earlier prototype's run (bf16 parameters
held in a second model, gradients summed and clipped in bf16).

    python benchmarks/update_precision.py --rounds 6 --out benchmarks/results/update_precision.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from oreal.cli import configure_native_libraries

configure_native_libraries(os.environ)  # as `oreal train` does, before torch loads

import torch  # noqa: E402  (after the native-library settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--micro-batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--out", default="benchmarks/results/update_precision.json")
    args = parser.parse_args()

    from oreal.algorithms import algorithm_params
    from oreal.batch import pad_rollouts
    from oreal.data import load_problems, render_prompt
    from oreal.models import load_policy
    from oreal.models.logprobs import batch_logprobs
    from oreal.optim import make_optimizer
    from oreal.rollout import FastGenerator, SamplingParams
    from oreal.runtime import Runtime
    from oreal.train.config import OptimConfig
    from oreal.train.update import policy_update

    policy, tokenizer = load_policy("embedded")
    generator = FastGenerator(policy, tokenizer, max_batch_size=64)
    problems = load_problems("synthetic:arithmetic?n=8&seed=0")
    prompts = [render_prompt(p, tokenizer, "boxed_short") for p in problems]
    sampling = SamplingParams(max_new_tokens=64, temperature=1.0, seed=0)
    rollouts = generator.generate(prompts, sampling, 8)
    batch = pad_rollouts([(o.prompt_ids, o.response_ids) for o in rollouts], generator.pad_token_id)
    advantages = torch.randn(len(rollouts), generator=torch.Generator().manual_seed(0))
    batch.advantages, batch.positive = advantages, advantages > 0
    batch.pass_rate = torch.full_like(advantages, 0.5)
    tokens = int(batch.loss_mask.sum())

    models = {
        "autocast": (policy, torch.float32),
        "bf16_weights": (copy.deepcopy(policy), torch.bfloat16),
    }

    exact = batch_logprobs(policy, batch, micro_batch_size=16, autocast=False)
    mask = batch.loss_mask.bool()
    error = {}
    for name, (model, dtype) in models.items():
        scored = batch_logprobs(model, batch, micro_batch_size=16, autocast=True, param_dtype=dtype)
        gap = (scored - exact)[mask].abs()
        error[name] = {"mean_abs_logprob_error": float(gap.mean()), "max": float(gap.max())}

    runtime = Runtime.from_env("cpu")
    params = algorithm_params("rloo", kl_coef=0.0)
    optimizers = {
        name: make_optimizer(model.parameters(), OptimConfig(lr=1e-6), 10**6)[0]
        for name, (model, _) in models.items()
    }
    variants = [(name, size) for name in models for size in args.micro_batch_sizes]

    def update(name: str, size: int) -> float:
        model, dtype = models[name]
        started = time.perf_counter()
        policy_update(
            model,
            optimizers[name],
            params,
            batch,
            runtime=runtime,
            micro_batch_size=size,
            autocast=True,
            param_dtype=dtype,
            max_new_tokens=64,
        )
        return time.perf_counter() - started

    for variant in variants:  # warm-up: allocator, kernel selection
        update(*variant)
    loadavg_before = os.getloadavg()
    seconds: dict[str, list[float]] = {f"{n}_mb{s}": [] for n, s in variants}
    for _ in range(args.rounds):
        for name, size in variants:
            seconds[f"{name}_mb{size}"].append(update(name, size))
    results = {
        key: {
            "trained_tokens_per_s_median": tokens / statistics.median(values),
            "trained_tokens_per_s": [tokens / v for v in values],
        }
        for key, values in seconds.items()
    }
    out = Path(args.out)
    report = {
        "benchmark": "update_precision",
        "command": "python benchmarks/update_precision.py " + " ".join(sys.argv[1:]),
        "model": "embedded",
        "response_tokens": tokens,
        "sequences": len(rollouts),
        "rounds": args.rounds,
        "results": results,
        "logprob_error_vs_fp32": error,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_before_after": [loadavg_before, os.getloadavg()],
        "note": "shared 2-core machine: other jobs may have run at the same time (loadavg)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    for key, value in results.items():
        print(f"{key}: median {value['trained_tokens_per_s_median']:.0f} trained tok/s")
    print(json.dumps(error, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
