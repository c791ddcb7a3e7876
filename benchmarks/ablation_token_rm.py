"""Ablation: OREAL with and without the token-level reward model, and GRPO, on the CPU demo.

Every variant is ``configs/demo.yaml`` (OREAL without the RM, on the embedded
SmolLM2-135M-Instruct) plus only what defines it: ``oreal_token_rm`` adds the ``token_rm``
section of ``configs/demo_token_rm.yaml``, ``grpo`` sets ``algorithm.name=grpo``. Data, seeds,
rollout and policy-optimizer settings are therefore identical by construction.

Held-out greedy pass@1 is measured before training and every ``--eval-every`` *policy
updates*. The RM variant first runs its ``policy_freeze_steps`` RM-only steps (the paper's
protocol: 10 RM steps, then 80 policy steps), so with the default ``--budget policy`` every
variant gets the same number of policy updates and the RM variant spends
``policy_freeze_steps`` more rollout batches; ``--budget total`` gives every variant the same
number of steps (rollout batches) instead.

Output is incremental: the JSON is rewritten after each run, and runs already in it are
skipped, so an interrupted ablation resumes where it stopped::

    python benchmarks/ablation_token_rm.py --seeds 0 1 2 --steps 15 --out ablation.json
    python benchmarks/ablation_token_rm.py --seeds 0 1 2 --steps 6 --eval-every 3 \\
        --eval-limit 32 --max-new-tokens 48 --prompts-per-step 8

It writes ``ablation.json`` (per run: accuracy per evaluated policy step, reward per step, RM
metrics, wall time; per variant: mean, std, min and max over seeds) and ``ablation.png``
(mean ± one standard deviation over seeds, min-max as a light band). ``--override
key.path=value`` (as for ``oreal train``) applies to every variant.

On a machine with more cores than one run uses, run several processes on disjoint
``--variants``/``--seeds`` with their own ``--out``, then combine them (same settings
required) into one JSON and PNG::

    python benchmarks/ablation_token_rm.py --steps 15 --merge a.json b.json --out ablation.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from oreal.train.callbacks import Callback

VARIANTS: tuple[str, ...] = ("oreal", "oreal_token_rm", "grpo")
# Per-step training metrics kept per run (from the trainer's records / metrics.jsonl).
PER_STEP_KEYS: tuple[str, ...] = (
    "reward_mean",
    "sequences_kept",
    "response_length",
    "truncation_rate",
    "policy_frozen",
    "rm_auc",
    "rm_loss",
    "rm_weight_pos_mean",
    "rm_weight_neg_mean",
    "rm_nonzero_frac",
    "step_time",
)


def variant_overrides(variant: str) -> list[str]:
    """What turns demo.yaml into ``variant``."""
    if variant == "grpo":
        return ["algorithm.name=grpo"]
    if variant == "oreal_token_rm":
        import yaml

        from oreal.configs import resolve_config_path

        preset = yaml.safe_load(resolve_config_path("demo_token_rm").read_text())
        return [f"token_rm.{key}={value}" for key, value in preset["token_rm"].items()]
    return []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=10, help="Policy updates (see --budget).")
    parser.add_argument("--budget", choices=("policy", "total"), default="policy")
    parser.add_argument("--eval-every", type=int, default=2, help="In policy updates.")
    parser.add_argument("--eval-limit", type=int, default=64, help="Held-out problems.")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Rollouts and eval.")
    parser.add_argument("--prompts-per-step", type=int, default=None)
    parser.add_argument("--override", action="append", default=[], help="key.path=value")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.json"))
    parser.add_argument("--png", type=Path, default=None, help="Default: --out with .png.")
    parser.add_argument("--run-root", type=Path, default=Path("runs/ablation_token_rm"))
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="Combine these partial outputs (same settings) into --out and plot; train nothing.",
    )
    return parser.parse_args(argv)


def variant_config(args: argparse.Namespace, variant: str, seed: int) -> Any:
    from oreal.config_io import load_config
    from oreal.configs import resolve_config_path
    from oreal.train.config import OrealConfig

    overrides = [
        f"train.seed={seed}",
        f"data.eval_limit={args.eval_limit}",
        "train.plot=false",
        "train.eval_every=0",
        f"train.run_dir={args.run_root / f'{variant}-seed{seed}'}",
    ]
    if args.max_new_tokens:
        overrides += [
            f"rollout.max_new_tokens={args.max_new_tokens}",
            f"train.eval_max_new_tokens={args.max_new_tokens}",
        ]
    if args.prompts_per_step:
        overrides.append(f"rollout.prompts_per_step={args.prompts_per_step}")
    overrides += variant_overrides(variant) + args.override
    config = load_config(OrealConfig, resolve_config_path("demo"), overrides)
    freeze = config.token_rm.policy_freeze_steps if config.token_rm.enabled else 0
    total = args.steps + freeze if args.budget == "policy" else args.steps
    config.train.steps = total
    if freeze >= total:
        raise SystemExit(f"{variant}: {freeze} frozen steps leave no policy update in {total}")
    return config


class EvalEveryPolicyUpdates(Callback):
    """Evaluate after every ``every`` policy updates (RM-only steps do not count) and keep each
    step's record; the trainer's own evaluation runs before the first and after the last step."""

    def __init__(self, every: int) -> None:
        self.every, self.updates = every, 0
        self.policy_steps: list[int] = [0]
        self.accuracy: list[float] = []
        self.records: list[dict[str, Any]] = []

    def on_step_end(self, trainer: Any, record: dict[str, float]) -> None:
        self.updates += 0 if record.get("policy_frozen") else 1
        last = trainer.step == trainer.config.train.steps
        due = self.updates % self.every == 0 and not record.get("policy_frozen")
        if due and not last:
            record["eval_accuracy"] = trainer.evaluate().accuracy
        if "eval_accuracy" in record:
            self.policy_steps.append(self.updates)
            self.accuracy.append(record["eval_accuracy"])
        self.records.append(record)


def run_one(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    """Train one variant/seed, evaluating every ``eval_every`` policy updates."""
    from oreal.train import Trainer

    config = variant_config(args, variant, seed)
    shutil.rmtree(config.train.run_dir, ignore_errors=True)  # a half-finished earlier attempt
    started = time.perf_counter()
    cadence = EvalEveryPolicyUpdates(args.eval_every)
    trainer = Trainer(args=config, callbacks=[cadence])
    trainer.train()
    before = json.loads((Path(config.train.run_dir) / "metrics.jsonl").read_text().splitlines()[0])
    accuracy = [before["eval_accuracy"], *cadence.accuracy]
    print(f"  {variant} seed {seed}: eval {accuracy}", flush=True)
    rollout = config.rollout
    return {
        "variant": variant,
        "overrides": variant_overrides(variant),
        "seed": seed,
        "total_steps": config.train.steps,
        "policy_updates": cadence.updates,
        "rollouts": config.train.steps * rollout.prompts_per_step * rollout.num_rollouts,
        "eval_policy_steps": cadence.policy_steps,
        "eval_accuracy": accuracy,
        "per_step": {k: [r.get(k) for r in cadence.records] for k in PER_STEP_KEYS},
        "wall_s": round(time.perf_counter() - started, 1),
        "run_dir": str(config.train.run_dir),
    }


def per_step_from_metrics(metrics_path: Path) -> dict[str, list[Any]]:
    """``per_step`` rebuilt from a run's ``metrics.jsonl`` (rows of training steps only)."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    rows = [row for row in rows if "reward_mean" in row]
    return {key: [row.get(key) for row in rows] for key in PER_STEP_KEYS}


def training_means(mine: list[dict[str, Any]]) -> dict[str, float | None]:
    """Means over seeds and steps of the per-step metrics (RM-only steps left out)."""
    means: dict[str, float | None] = {}
    for key in PER_STEP_KEYS:
        values = [
            value
            for run in mine
            for value, frozen in zip(
                run["per_step"].get(key, []), run["per_step"]["policy_frozen"], strict=False
            )
            if value is not None and not frozen
        ]
        means[key] = statistics.fmean(values) if values else None
    return means


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per variant and evaluated policy step: mean, std, min, max of accuracy over seeds; and
    the per-step training metrics averaged over seeds and policy steps."""
    summary: dict[str, Any] = {}
    for variant in VARIANTS:
        mine = [run for run in runs.values() if run["variant"] == variant]
        if not mine:
            continue
        steps = sorted(set.intersection(*(set(run["eval_policy_steps"]) for run in mine)))
        rows = []
        for step in steps:
            values = [run["eval_accuracy"][run["eval_policy_steps"].index(step)] for run in mine]
            rows.append(
                {
                    "policy_step": step,
                    "mean": statistics.fmean(values),
                    "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
            )
        first, last = rows[0], rows[-1]
        summary[variant] = {
            "seeds": sorted(run["seed"] for run in mine),
            "curve": rows,
            "gain_mean": last["mean"] - first["mean"],
            "final_mean": last["mean"],
            "final_std": last["std"],
            "wall_s_mean": statistics.fmean(run["wall_s"] for run in mine),
            "training_means": training_means(mine),
        }
    return summary


def plot(summary: dict[str, Any], output: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for variant, data in summary.items():
        x = [row["policy_step"] for row in data["curve"]]
        mean = [row["mean"] for row in data["curve"]]
        std = [row["std"] for row in data["curve"]]
        line = axis.plot(x, mean, marker="o", label=f"{variant} (n={len(data['seeds'])})")[0]
        colour = line.get_color()
        low = [max(m - s, 0.0) for m, s in zip(mean, std, strict=True)]  # accuracy >= 0
        high = [min(m + s, 1.0) for m, s in zip(mean, std, strict=True)]
        axis.fill_between(x, low, high, color=colour, alpha=0.25)
        lowest, highest = [r["min"] for r in data["curve"]], [r["max"] for r in data["curve"]]
        axis.fill_between(x, lowest, highest, color=colour, alpha=0.08)
    axis.set_xlabel("policy steps (after any RM-only steps)")
    axis.set_ylabel("held-out greedy pass@1")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def merge_outputs(paths: list[Path], settings: dict[str, Any]) -> dict[str, Any]:
    """Union of the runs in ``paths``; refuses files with other settings or clashing runs."""
    merged: dict[str, Any] = {"settings": settings, "runs": {}, "commands": []}
    for path in paths:
        if not path.exists():
            raise SystemExit(f"--merge: {path} does not exist")
        part = json.loads(path.read_text())
        if part.get("settings") != settings:
            raise SystemExit(f"--merge: {path} has settings {part.get('settings')}, not {settings}")
        clash = sorted(set(part["runs"]) & set(merged["runs"]))
        if clash:
            raise SystemExit(f"--merge: {path} repeats runs {clash}")
        for run in part["runs"].values():
            metrics = Path(run.get("run_dir", "")) / "metrics.jsonl"
            if run.get("run_dir") and metrics.is_file():  # parts written before a key was added
                run["per_step"] = per_step_from_metrics(metrics)
        merged["runs"].update(part["runs"])
        merged["commands"].append(part.get("command"))
    return merged


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = {
        "steps": args.steps,
        "budget": args.budget,
        "eval_every": args.eval_every,
        "eval_limit": args.eval_limit,
        "max_new_tokens": args.max_new_tokens,
        "prompts_per_step": args.prompts_per_step,
        "overrides": args.override,
    }
    data: dict[str, Any] = {"settings": settings, "runs": {}}
    if args.merge:
        data = merge_outputs(args.merge, settings)
    elif args.out.exists():
        data = json.loads(args.out.read_text())
        if data.get("settings") != settings:
            raise SystemExit(f"{args.out} holds runs with other settings: {data.get('settings')}")
    data["command"] = " ".join(["python", *sys.argv])
    seeds = [] if args.merge else args.seeds
    for seed in seeds:  # seed-major: a partial ablation still compares every variant
        for variant in args.variants:
            key = f"{variant}/seed{seed}"
            if key in data["runs"]:
                print(f"skip {key} (already in {args.out})", flush=True)
                continue
            print(f"run {key}", flush=True)
            data["runs"][key] = run_one(args, variant, seed)
            data["summary"] = summarize(data["runs"])
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(data, indent=1) + "\n")
    data["summary"] = summarize(data["runs"])
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    title = f"{args.steps} {args.budget} steps, {args.eval_limit} held-out problems"
    if args.override:
        title += "\n" + " ".join(args.override)
    plot(data["summary"], args.png or args.out.with_suffix(".png"), title)
    for variant, row in data["summary"].items():
        first, last = row["curve"][0], row["curve"][-1]
        print(
            f"{variant:16s} {first['mean']:.3f} -> {last['mean']:.3f} "
            f"(± {last['std']:.3f} over {len(row['seeds'])} seeds; "
            f"{row['wall_s_mean'] / 60:.1f} min per run)"
        )


if __name__ == "__main__":
    main()
