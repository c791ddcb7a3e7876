"""Accuracy against budget for every search method on the embedded model, untrained and trained.

The task is the CPU demo's held-out split (64 addition/subtraction problems of 1-2 digit
numbers, ``configs/demo.yaml``'s ``data.eval``). The policies are SmolLM2-135M-Instruct before
training (``embedded``) and after two ``oreal train`` runs: the ``demo`` preset (OREAL, 15
steps), then ``demo_token_rm`` (OREAL with the token RM, 2 RM-only + 15 policy steps) started
from that policy, so that its RM sees rollouts with both correct and wrong answers. The scorer
of every scored method is that second run's token RM; the verifier oracle (best-of-N reading
the gold) gives the upper bound on the same samples as majority vote. Each measurement is one
``oreal search`` command (printed, and kept in the JSON); an interrupted one is resumed. Then
everything is collected into one JSON and one plot::

    oreal train demo --run-dir /tmp/sw/demo-run --threads 1
    oreal train demo_token_rm --run-dir /tmp/sw/rm-run --threads 1 \\
        model.name_or_path=/tmp/sw/demo-run/checkpoints/step-000015/policy
    python benchmarks/search_embedded.py --run-dir /tmp/sw/rm-run --work /tmp/sw \\
        --out benchmarks/results/search_embedded.json

``--only NAME ...`` runs a subset; ``--collect`` only rewrites the JSON and PNG from what the
work directory holds. Accuracies come with their binomial standard error over problems,
sqrt(p (1 - p) / n): with 64 problems one problem is 1.6 points.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

SPEC = "synthetic:arithmetic?n=64&digits=1-2&ops=add,sub&seed=12345&split=test"
COMMON = [
    "--benchmarks", SPEC, "--max-new-tokens", "64", "--batch-size", "16", "--threads", "1",
]  # fmt: skip


POOLED = "majority,best_of_n,weighted_majority"  # one shared pool of samples


def runs(run_dir: str, limit: int, budgets: str) -> dict[str, list[str]]:
    """name -> oreal search arguments (without --out)."""
    base = [*COMMON, "--limit", str(limit), "--budget", budgets]
    untrained = ["embedded", "--template", "boxed_example"]
    trained = [run_dir]  # its latest checkpoint's policy, and its template (boxed_example)
    return {
        "untrained-tokenrm": [*untrained, "--method", "all", "--scorer", run_dir, *base],
        "trained-tokenrm": [*trained, "--method", "all", "--scorer", run_dir, *base],
        "untrained-oracle": [*untrained, "--method", POOLED, "--scorer", "verifier", *base],
        "trained-oracle": [*trained, "--method", POOLED, "--scorer", "verifier", *base],
        "trained-likelihood": [
            *trained, "--method", "best_of_n,weighted_majority,particle_filtering",
            "--scorer", "likelihood", *base,
        ],
    }  # fmt: skip


def run_one(name: str, args: list[str], work: Path) -> None:
    out = work / name
    command = ["oreal", "search", *args, "--out", str(out)]
    if (out / "settings.json").is_file():
        command.append("--resume")
    print("$ " + shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def scorer_auc(generations: Path) -> dict[str, float] | None:
    """ROC-AUC of the scorer on single samples: the budget-1 records of the scored methods
    (one sampled solution each, with its score and verdict), distinct (problem, response)."""
    seen: dict[tuple[str, str], tuple[float, bool]] = {}
    for line in generations.read_text("utf-8").splitlines():
        record = json.loads(line)
        score = (record.get("search") or {}).get("score")
        if record.get("budget") == 1 and score is not None:
            seen[(record["problem_id"], record["response"])] = (score, bool(record["correct"]))
    positives = [s for s, ok in seen.values() if ok]
    negatives = [s for s, ok in seen.values() if not ok]
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return {
        "auc": wins / (len(positives) * len(negatives)),
        "samples": len(seen),
        "correct": len(positives),
    }


def collect(names: dict[str, list[str]], work: Path) -> dict[str, Any]:
    collected: dict[str, Any] = {"task": SPEC, "runs": {}}
    for name, args in names.items():
        results = work / name / "results.json"
        if not results.is_file():
            continue
        document = json.loads(results.read_text("utf-8"))
        (benchmark,) = document["benchmarks"].values()
        table: dict[str, dict[str, Any]] = {}
        for method, budgets in benchmark.items():
            for budget, entry in budgets.items():
                if "skipped" in entry:
                    continue
                p, n = entry["accuracy"], entry["num_problems"]
                table.setdefault(method, {})[budget] = {
                    "accuracy": p,
                    "standard_error": math.sqrt(p * (1 - p) / n),
                    "correct": round(p * n),
                    "problems": n,
                    "truncation_rate": entry["truncation_rate"],
                    **entry["compute"],
                }
        collected["runs"][name] = {
            "command": "oreal search " + shlex.join([*args, "--out", str(results.parent)]),
            "model_path": document["model_path"],
            "scorer": document["scorer_kind"],
            "wall_time_s": document["wall_time_s"],
            "scorer_auc_on_single_samples": scorer_auc(results.parent / "generations.jsonl"),
            "methods": table,
        }
    return collected


def markdown(collected: dict[str, Any]) -> str:
    """One table per run: accuracy % (correct / problems) and generated tokens per problem."""
    lines = []
    for name, run in collected["runs"].items():
        budgets = sorted({b for m in run["methods"].values() for b in m}, key=int)
        auc = run.get("scorer_auc_on_single_samples")
        note = (
            ""
            if not auc
            else (
                f"; scorer ROC-AUC on {auc['samples']} single samples ({auc['correct']} correct): "
                f"{auc['auc']:.2f}"
            )
        )
        lines += [
            f"**{name}** (`{run['command']}`, {run['wall_time_s'] / 60:.0f} min{note})",
            "",
            "| method | " + " | ".join(f"N={b}" for b in budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        for method, table in run["methods"].items():
            cells = []
            for b in budgets:
                e = table.get(b)
                cells.append(
                    "n/a"
                    if e is None
                    else f"{100 * e['accuracy']:.1f} ({e['correct']}/{e['problems']}), "
                    f"{e['generated_tokens_per_problem']:.0f} tok"
                )
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(collected: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = ["untrained", "trained"]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100, sharey=True)
    for axis, policy in zip(axes, policies, strict=True):
        for name, run in collected["runs"].items():
            if not name.startswith(policy + "-"):
                continue
            scorer = name.split("-", 1)[1]
            for method, budgets in run["methods"].items():
                if scorer == "oracle" and method != "best_of_n":
                    continue  # its majority duplicates the token-RM run's (same samples)
                style: dict[str, Any] = {}
                label = method if method == "majority" else f"{method} ({scorer})"
                if scorer == "oracle":
                    label, style = "best-of-N, verifier oracle (upper bound)", {
                        "linestyle": "--", "color": "black"}  # fmt: skip
                elif scorer == "likelihood":
                    style = {"linestyle": ":"}
                xs = sorted(budgets, key=int)
                ys = [100 * budgets[b]["accuracy"] for b in xs]
                errors = [100 * budgets[b]["standard_error"] for b in xs]
                axis.errorbar([int(b) for b in xs], ys, yerr=errors, marker="o", capsize=2,
                              label=label, **style)  # fmt: skip
        axis.set_xscale("log", base=2)
        ticks = sorted(
            {int(b) for r in collected["runs"].values() for m in r["methods"].values() for b in m}
        )
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_xlabel("budget N (full-solution equivalents)")
        axis.set_title(f"{policy} policy", fontsize=10)
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy of the returned solution (%)")
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle("SmolLM2-135M-Instruct, demo held-out arithmetic (±1 binomial SE)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="/tmp/sw/rm-run", help="the token-RM run")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sw"), help="oreal search outputs")
    parser.add_argument("--limit", type=int, default=64, help="problems (of the 64)")
    parser.add_argument("--budgets", default="1,2,4,8")
    parser.add_argument("--only", nargs="*", help="run only these names")
    parser.add_argument("--collect", action="store_true", help="only rewrite the JSON and PNG")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_embedded.json"))
    args = parser.parse_args(argv)
    names = runs(args.run_dir, args.limit, args.budgets)
    if not args.collect:
        for name, run_args in names.items():
            if not args.only or name in args.only:
                run_one(name, run_args, args.work)
    collected = collect(names, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(collected, indent=2) + "\n", "utf-8")
    plot(collected, args.out.with_suffix(".png"))
    args.out.with_suffix(".md").write_text(markdown(collected), "utf-8")
    print(f"wrote {args.out} and its .png and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
