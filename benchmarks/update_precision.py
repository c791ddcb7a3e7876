"""What the update's precision recipe costs: bf16 autocast over fp32 weights (oreal's today)
against bf16 working weights with fp32 master weights, on one batch, alternated in one process.

The question it answers: how much of the update's time goes to mixed precision by autocast
(each micro-batch re-casts every fp32 weight to bf16, its backward casts every weight gradient
back and adds it into the fp32 ``.grad``, the norms and the residual stream run in fp32),
against the recipe of FSDP's ``MixedPrecisionPolicy(param_dtype=bf16)`` and Megatron: the
model's parameters in bf16 (buffers such as RoPE's frequencies stay fp32), fp32 master copies
that AdamW steps, copied back into the bf16 parameters after each step. Here the masters
are a wrapper around the optimizer (:class:`MasterWeights`, benchmark-only): the gradients
accumulate over micro-batches in bf16 and are clipped there, then widened once per step; a
trainer would widen after each micro-batch and clip the fp32 gradients (a few % more time).
The log-prob columns say what the numbers lose: mean and max |log p - log p_fp32| over the
batch's response tokens, against an fp32 forward without autocast, before any update.

Loads the embedded SmolLM2-135M-Instruct, samples 8 prompts x 8 rollouts x 64 new tokens with
the fast engine (temperature 1, seed 0), then times ``policy_update`` (RLOO's policy
gradient, no KL, random advantages, as ``benchmarks/step_time.py``) for each recipe and
micro-batch size, in turn, ``--rounds`` times after one warm-up each.

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


class MasterWeights:
    """The optimizer interface ``policy_update`` uses, over fp32 masters of bf16 parameters."""

    def __init__(self, working: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer):
        self.working, self.optimizer = working, optimizer
        self.masters = [group_param for g in optimizer.param_groups for group_param in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.working:
            param.grad = None

    def step(self) -> None:
        for param, master in zip(self.working, self.masters, strict=True):
            master.grad = None if param.grad is None else param.grad.float()
        self.optimizer.step()
        with torch.no_grad():
            for param, master in zip(self.working, self.masters, strict=True):
                param.copy_(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--micro-batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--out", default="benchmarks/results/update_precision.json")
    args = parser.parse_args()

    from oreal.algorithms import algorithm_params
    from oreal.batch import pad_rollouts
    from oreal.data import load_problems, render_prompt
    from oreal.models import load_policy, token_logprobs
    from oreal.models.device import autocast_context
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

    working = copy.deepcopy(policy)
    for param in working.parameters():  # parameters only: buffers (RoPE) stay fp32
        param.data = param.data.to(torch.bfloat16)
    models = {"autocast": (policy, True), "bf16_master_weights": (working, False)}

    def logprobs(model: torch.nn.Module, autocast: bool) -> torch.Tensor:
        with torch.no_grad(), autocast_context("cpu", autocast):
            values, _ = token_logprobs(
                model, batch.input_ids, batch.attention_mask, batch.response_mask
            )
        return values.float()[batch.loss_mask.bool()]

    exact = logprobs(policy, False)
    error = {}
    for name, (model, autocast) in models.items():
        gap = (logprobs(model, autocast) - exact).abs()
        error[name] = {"mean_abs_logprob_error": float(gap.mean()), "max": float(gap.max())}

    runtime = Runtime.from_env("cpu")
    params = algorithm_params("rloo", kl_coef=0.0)
    masters = [torch.nn.Parameter(p.detach().float().clone()) for p in working.parameters()]
    optimizers = {
        "autocast": make_optimizer(policy.parameters(), OptimConfig(lr=1e-6), 10**6)[0],
        "bf16_master_weights": MasterWeights(
            list(working.parameters()), make_optimizer(masters, OptimConfig(lr=1e-6), 10**6)[0]
        ),
    }
    variants = [(name, size) for name in models for size in args.micro_batch_sizes]

    def update(name: str, size: int) -> float:
        model, autocast = models[name]
        started = time.perf_counter()
        policy_update(
            model,
            optimizers[name],
            params,
            batch,
            runtime=runtime,
            micro_batch_size=size,
            autocast=autocast,
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
        "note": "bf16_master_weights: grads summed and clipped in bf16, widened once per step",
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
