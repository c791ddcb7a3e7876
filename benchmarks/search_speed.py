"""What batching buys a step-level search: all problems' particles in one call, or one at a time.

Particle filtering (budget N) on the embedded model, the demo's held-out arithmetic, token budget
64, on one generation engine (``--backend fast``: the keyed CPU engine; ``hf``: transformers).
``batched``: ``--problems`` problems searched together, so every step of every live particle of
all of them is one ``generate`` call and one scorer call. ``one_by_one``: the same problems, one
problem per call (``batch_size=1``). On the keyed engine both draw from the same keys (the
same searches up to bf16 rounding of one-row batches, docs/rollout.md); on
``hf`` sampling is seeded, so both do the same kind of work;
the two are interleaved ``--repeats`` times and the medians and their ratio are reported, with
how the time splits between generation and scoring::

    OMP_NUM_THREADS=1 python benchmarks/search_speed.py --scorer likelihood --backend fast \\
        --out benchmarks/results/search_speed_fast.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SPEC = "synthetic:arithmetic?n=64&digits=1-2&ops=add,sub&seed=12345&split=test"


class TimedGenerator:
    """A Generator that adds up the seconds spent in ``generate``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokenizer, self.seconds = inner, inner.tokenizer, 0.0

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.generate(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def sync_weights(self, model: Any) -> None:
        self.inner.sync_weights(model)


class TimedScorer:
    """A scorer that adds up the seconds spent in ``score``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.per_step, self.seconds = inner, inner.name, inner.per_step, 0.0

    def score(self, requests: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.score(requests)
        finally:
            self.seconds += time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from oreal.data import load_problems
    from oreal.eval import evaluate_problems
    from oreal.models import load_policy
    from oreal.rollout import FastGenerator, HFGenerator, SamplingParams
    from oreal.search import SearchConfig, build_strategy, load_scorer
    from oreal.verify import Verifier

    torch.set_num_threads(args.threads)
    problems = load_problems(SPEC, limit=args.problems)
    model, tokenizer = load_policy("embedded")
    params = SamplingParams(max_new_tokens=64, temperature=0.8, seed=0)
    runs: dict[str, list[dict[str, float]]] = {"batched": [], "one_by_one": []}
    with Verifier() as verifier:
        scorer = load_scorer(args.scorer, verifier=verifier, policy=model, tokenizer=tokenizer)
        for _ in range(args.repeats):
            for name, batch_size in (("batched", args.problems), ("one_by_one", 1)):
                engine = (
                    FastGenerator(model, tokenizer)
                    if args.backend == "fast"
                    else HFGenerator(model, tokenizer)
                )
                generator = TimedGenerator(engine)
                timed_scorer = TimedScorer(scorer)
                strategy = build_strategy(
                    "particle_filtering",
                    generator,
                    timed_scorer,
                    budget=args.budget,
                    config=SearchConfig(),
                )
                strategy.register_problems(problems, "boxed_example")
                start = time.perf_counter()
                result = evaluate_problems(
                    strategy,
                    problems,
                    template="boxed_example",
                    sampling=params,
                    verifier=verifier,
                    batch_size=batch_size,
                )
                runs[name].append(
                    {
                        "wall_s": time.perf_counter() - start,
                        "generate_s": generator.seconds,
                        "score_s": timed_scorer.seconds,
                        "accuracy": result.accuracy,
                    }
                )
                print(name, runs[name][-1], flush=True)
    medians = {
        name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for name, rows in runs.items()
    }
    return {
        "task": SPEC,
        "problems": args.problems,
        "method": "particle_filtering",
        "budget": args.budget,
        "scorer": args.scorer,
        "backend": args.backend,
        "threads": args.threads,
        "repeats": args.repeats,
        "runs": runs,
        "medians": medians,
        "one_by_one_over_batched_wall": medians["one_by_one"]["wall_s"]
        / medians["batched"]["wall_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--scorer", default="likelihood")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", choices=("fast", "hf"), default="fast")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/search_speed_fast.json")
    )
    args = parser.parse_args(argv)
    document = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    print(json.dumps(document["medians"], indent=2))
    print(f"one by one / batched wall time: {document['one_by_one_over_batched_wall']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
