"""Does the fast CPU engine draw the same responses at any batch size on the embedded model?

    OMP_NUM_THREADS=1 python benchmarks/sampling_invariance.py \\
        --out benchmarks/results/sampling_invariance.json

8 arithmetic prompts x 4 samples x 48 new tokens at temperature 0.7 (seed 123), generated with
``max_batch_size`` 64, 7 and 1, in bf16 and in fp32 matmuls; counts the responses that differ
from the ``max_batch_size`` 64 run. Keyed sampling makes the random numbers independent of the
batch; this measures whether the logits are too (tests/test_sampling_keyed.py checks it
exactly on a tiny model).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from oreal.models import load_policy
from oreal.rollout.base import SamplingParams
from oreal.rollout.fast import FastGenerator

PAIRS = [(3, 99), (57, 17), (9, 44), (7, 28), (12, 5), (40, 41), (66, 3), (8, 8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/sampling_invariance.json")
    )
    args = parser.parse_args()
    model, tokenizer = load_policy("embedded")
    prompts = [f"What is {a} + {b}? Put your final answer within \\boxed{{}}." for a, b in PAIRS]
    params = SamplingParams(max_new_tokens=48, temperature=0.7, seed=123)
    result: dict[str, object] = {
        "command": "python benchmarks/sampling_invariance.py",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "responses": len(prompts) * 4,
    }
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        responses = {}
        for batch in (64, 7, 1):
            engine = FastGenerator(model, tokenizer, max_batch_size=batch, matmul_dtype=dtype)
            outputs = engine.generate(prompts, params, num_return_sequences=4).outputs
            responses[batch] = [o.response_ids for o in outputs]
        result[name] = {
            f"differ_at_max_batch_size_{batch}_vs_64": sum(
                a != b for a, b in zip(responses[64], responses[batch], strict=True)
            )
            for batch in (7, 1)
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
