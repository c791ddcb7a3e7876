"""Peak RSS and time of the demo's policy updates alone, without rollouts: for allocator and
checkpointing comparisons in a minute instead of a whole demo run.

Loads the embedded SmolLM2-135M-Instruct, its frozen reference (bf16 linear weights, as the
trainer builds it under bf16 autocast) and fused AdamW, then runs one reference scoring and
one OREAL update per entry of ``--rows``: kept rows of the demo's shape (pairs of a correct
and a wrong response to one of the demo's 62-token prompts, 20-48 random response tokens),
micro-batches of 16, bf16 autocast, temperature 0.7. The default row counts are the demo's
kept rows per updating step (``oreal train``, steps 3-11). RSS is sampled every 10 ms.

    python benchmarks/update_memory.py --out /tmp/u.json                    # oreal's settings
    python benchmarks/update_memory.py --no-checkpointing --out /tmp/u.json
    MALLOC_TOP_PAD_=131072 python benchmarks/update_memory.py --out /tmp/u.json  # glibc's own

Any ``MALLOC_*`` variable turns oreal's allocator settings off (``MALLOC_TOP_PAD_=131072`` is
glibc's default value, so it leaves glibc exactly as it ships).

``--tally-saved`` instead runs one forward with gradients of a 16-row micro-batch (no
checkpointing) and sums the bytes autograd saved for the backward by node type and dtype
(distinct storages counted once): what activation checkpointing removes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from oreal.cli import configure_native_libraries

configure_native_libraries(os.environ)  # as `oreal train` does, before torch loads

import torch  # noqa: E402  (after the native-library settings)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_breakdown import MB, PhaseSampler, heap_mb  # noqa: E402

DEMO_KEPT_ROWS = "2,6,4,12,8,10,10,18,8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=DEMO_KEPT_ROWS, help="kept rows of each update")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--tally-saved", action="store_true", help="see the docstring")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from oreal.batch import pad_rollouts
    from oreal.data import load_problems, render_prompt
    from oreal.models import load_policy
    from oreal.models.reference import FrozenReference
    from oreal.optim import make_optimizer
    from oreal.runtime import Runtime
    from oreal.train.config import OptimConfig, OrealConfig
    from oreal.train.update import policy_update

    sampler = PhaseSampler()
    sampler.start()
    sampler.phase = "load"
    checkpointing = not args.no_checkpointing
    policy, tokenizer = load_policy("embedded", gradient_checkpointing=checkpointing)
    try:
        reference = FrozenReference.copy_of(policy, matmul_dtype=torch.bfloat16)
    except TypeError:  # a checkout from before the bf16 reference
        reference = FrozenReference.copy_of(policy)
    params = OrealConfig().algorithm.resolved
    optimizer, _ = make_optimizer(list(policy.parameters()), OptimConfig(lr=4e-5), 11)
    problems = load_problems("synthetic:arithmetic?n=2048&digits=1-2&ops=add,sub&seed=0")
    generator = torch.Generator().manual_seed(0)
    runtime = Runtime.from_env("cpu")

    def kept_rows(rows: int, offset: int):
        pairs = []
        for i in range(rows // 2):
            problem = problems[offset + i]
            prompt = render_prompt(problem, tokenizer, "boxed_example")
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            for length in (48, 20 + (7 * i + offset) % 29):
                response = torch.randint(100, 40000, (length,), generator=generator).tolist()
                pairs.append((ids, response))
        batch = pad_rollouts(pairs, tokenizer.pad_token_id)
        return replace(
            batch,
            advantages=torch.tensor([1.0, -1.0] * (rows // 2)),
            positive=torch.tensor([True, False] * (rows // 2)),
            pass_rate=torch.full((rows,), 0.5),
        )

    if args.tally_saved:
        result = tally_saved(policy, kept_rows(16, 0))
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return

    updates = []
    for step, rows in enumerate(int(r) for r in args.rows.split(",")):
        batch = kept_rows(rows, 16 * step)
        sampler.phase = "reference"
        batch.ref_logprobs = reference.logprobs(
            batch, micro_batch_size=16, autocast=True, temperature=0.7
        )
        sampler.phase = "update"
        sampler.open_window()
        tick = time.perf_counter()
        record = policy_update(
            policy,
            optimizer,
            params,
            batch,
            runtime=runtime,
            micro_batch_size=16,
            autocast=True,
            temperature=0.7,
            max_new_tokens=48,
            step=step,
        )
        optimizer.zero_grad(set_to_none=True)  # as the trainer does after its update
        seconds = time.perf_counter() - tick
        updates.append(
            {
                "rows": rows,
                "seconds": round(seconds, 2),
                "peak_mb": round(sampler.window / MB, 1),
                "loss": record.get("loss"),
                "malloc_mb": heap_mb(),
            }
        )
        print(json.dumps(updates[-1]), flush=True)
    sampler.stop()
    result = {
        "command": " ".join(["python", *sys.argv]),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "gradient_checkpointing": checkpointing,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "loadavg_end": os.getloadavg(),
        "update_seconds_total": round(sum(u["seconds"] for u in updates), 1),
        "peak_rss_mb": round(max(sampler.peaks.values()) / MB, 1),
        "peak_rss_mb_by_phase": {k: round(v / MB, 1) for k, v in sampler.peaks.items()},
        "updates": updates,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("update_seconds_total", "peak_rss_mb")}))


def tally_saved(policy: torch.nn.Module, batch: Any) -> dict[str, Any]:
    """MB saved for backward by one forward of ``batch``, by autograd node type and dtype."""
    from oreal.models import autocast_context, token_logprobs

    policy.train()
    with autocast_context("cpu", True):
        logp, entropy = token_logprobs(
            policy,
            batch.input_ids,
            batch.attention_mask,
            batch.response_mask,
            with_entropy=True,
            temperature=0.7,
        )
    assert entropy is not None
    root = (logp.sum() + entropy.sum()).grad_fn
    seen: set[int] = set()
    tally: Counter[str] = Counter()
    stack, visited = [root], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attribute in dir(node):
            if not attribute.startswith("_saved_"):
                continue
            value = getattr(node, attribute)
            for tensor in value if isinstance(value, (list, tuple)) else [value]:
                if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
                    continue
                storage = tensor.untyped_storage()
                if storage.data_ptr() in seen:
                    continue
                seen.add(storage.data_ptr())
                dtype = str(tensor.dtype).removeprefix("torch.")
                tally[f"{type(node).__name__} {dtype}"] += storage.nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    layout_tokens = int(batch.attention_mask.sum())  # padded rows; the stream holds fewer
    return {
        "command": " ".join(["python", *sys.argv]),
        "rows": len(batch),
        "response_tokens": int(batch.loss_mask.sum()),
        "row_tokens": layout_tokens,
        "saved_mb": round(sum(tally.values()) / MB, 1),
        "saved_mb_by_node": {k: round(v / MB, 1) for k, v in tally.most_common()},
        "note": "the fused head's own saved tensors (a custom Function) are not listed",
    }


if __name__ == "__main__":
    main()
