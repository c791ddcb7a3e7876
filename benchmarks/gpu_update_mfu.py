"""Update throughput and MFU of oreal's policy update on a GPU, for a model of a given shape.

    python benchmarks/gpu_update_mfu.py --shape qwen2.5-1.5b --steps 4 --rows 16 --length 1024

Builds a randomly initialised model with the shape's config (no model hub needed), then runs
``--steps`` update steps of oreal's policy update (``oreal.train.update.policy_update``: chunked
log-probs, the OREAL release loss, AdamW) on random token rows with half of each row a
response, and reports trained tokens/s and MFU = 6 · parameters · tokens/s / peak bf16
FLOP/s (``--peak-tflops``, default 989: an H100 SXM, dense). The first step is a warm-up and
not timed. ``--shape tiny`` runs in seconds on a CPU (a smoke test of the script).
Writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

SHAPES = {
    # Qwen2.5-1.5B / Qwen2.5-Math-1.5B (config.json of the hub release)
    "qwen2.5-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rope_theta=1_000_000.0, tie_word_embeddings=True,
    ),
    # Qwen2.5-7B
    "qwen2.5-7b": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
        rope_theta=1_000_000.0, tie_word_embeddings=False,
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=512, max_position_embeddings=2048,
    ),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-1.5b")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up)")
    parser.add_argument("--rows", type=int, default=16, help="sequences per step")
    parser.add_argument("--length", type=int, default=1024, help="tokens per sequence")
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--param-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="model.param_dtype: bf16 autocast over fp32 weights, or bf16 copies of them",
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_update_mfu.json"))
    args = parser.parse_args()

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from oreal.algorithms import algorithm_params
    from oreal.batch import pad_rollouts
    from oreal.models import enable_gradient_checkpointing
    from oreal.optim import make_optimizer
    from oreal.runtime import Runtime
    from oreal.train.config import OptimConfig
    from oreal.train.update import policy_update

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**SHAPES[args.shape])).to(device)
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer, _ = make_optimizer(model.parameters(), OptimConfig(lr=1e-6), total_steps=10)
    params = algorithm_params("oreal", kl_coef=0.0)
    vocab, half = SHAPES[args.shape]["vocab_size"], args.length // 2
    generator = torch.Generator().manual_seed(0)

    def batch():  # half prompt, half response; alternating correct / wrong rows
        ids = torch.randint(0, vocab, (args.rows, args.length), generator=generator).tolist()
        rows = pad_rollouts([(row[:half], row[half:]) for row in ids], pad_token_id=0)
        rows.positive = torch.arange(args.rows) % 2 == 0
        rows.advantages = torch.where(rows.positive, 1.0, -1.0)
        return rows.to(device)

    timings = []
    for step in range(args.steps + 1):
        rows = batch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        policy_update(
            model, optimizer, params, rows, runtime=Runtime(device=device),
            micro_batch_size=args.micro_batch_size, autocast=True,
            param_dtype=getattr(torch, args.param_dtype),
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step compiles kernels and allocates: not timed
            timings.append(time.perf_counter() - tick)
    tokens = args.rows * args.length  # every token is forwarded and back-propagated
    median = sorted(timings)[len(timings) // 2]
    tokens_per_s = tokens / median
    mfu = 6 * parameters * tokens_per_s / (args.peak_tflops * 1e12)
    result = {
        "command": "python benchmarks/gpu_update_mfu.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "parameters": parameters,
        "tokens_per_step": tokens,
        "step_seconds": timings,
        "median_step_seconds": median,
        "trained_tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30
        if device.type == "cuda"
        else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
