"""``benchmarks/ablation_token_rm.py``: its variants differ only in what defines them, and its
summary and merge are right (the training itself is the trainer's, tested elsewhere)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation_token_rm.py"


@pytest.fixture(scope="module")
def ablation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ablation_token_rm", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_differ_only_in_what_defines_them(ablation: ModuleType, tmp_path: Path) -> None:
    args = ablation.parse_args(["--steps", "4", "--run-root", str(tmp_path)])
    dumps = {v: ablation.variant_config(args, v, 3).model_dump() for v in ablation.VARIANTS}
    for dump in dumps.values():
        dump["train"].pop("run_dir")
    base = dumps["oreal"]
    assert base["train"]["seed"] == 3 and base["train"]["steps"] == 4
    assert base["token_rm"]["enabled"] is False and base["algorithm"]["name"] == "oreal"

    grpo = dumps["grpo"]
    assert grpo["algorithm"]["name"] == "grpo"
    assert grpo == {**base, "algorithm": {**base["algorithm"], "name": "grpo"}}

    with_rm = dumps["oreal_token_rm"]
    rm = with_rm.pop("token_rm")
    assert rm["enabled"] and rm["policy_freeze_steps"] > 0
    # The same number of policy updates: the RM-only steps come on top (--budget policy).
    assert with_rm["train"]["steps"] == 4 + rm["policy_freeze_steps"]
    with_rm["train"]["steps"] = 4
    assert with_rm == {k: v for k, v in base.items() if k != "token_rm"}


def run(
    variant: str,
    seed: int,
    steps: list[int],
    accuracy: list[float],
    rewards: tuple[float, ...] = (0.0, 0.5),
    frozen: tuple[float | None, ...] = (None, None),
) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "eval_policy_steps": steps,
        "eval_accuracy": accuracy,
        "wall_s": 60.0,
        "per_step": {"reward_mean": list(rewards), "policy_frozen": list(frozen)},
    }


def test_summary_is_mean_std_min_max_over_seeds(ablation: ModuleType) -> None:
    runs = {
        "oreal/seed0": run("oreal", 0, [0, 5], [0.0, 0.5]),
        "oreal/seed1": run("oreal", 1, [0, 5], [0.0, 0.25], (0.9, 0.0, 0.25), (1.0, 0.0, 0.0)),
        "grpo/seed0": run("grpo", 0, [0, 5], [0.25, 0.25]),
    }
    summary = ablation.summarize(runs)
    assert set(summary) == {"oreal", "grpo"}
    last = summary["oreal"]["curve"][-1]
    assert last == {"policy_step": 5, "mean": 0.375, "std": 0.125, "min": 0.25, "max": 0.5, "n": 2}
    assert summary["oreal"]["gain_mean"] == 0.375 and summary["grpo"]["gain_mean"] == 0.0
    # Training means over seeds and policy steps: seed 1's RM-only first step is left out.
    assert summary["oreal"]["training_means"]["reward_mean"] == pytest.approx(0.75 / 4)
    assert summary["oreal"]["training_means"]["rm_auc"] is None


def test_merge_rebuilds_per_step_from_the_run_directory(
    ablation: ModuleType, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"step": 1, "reward_mean": 0.25, "rm_auc": 0.75}, {"step": 1, "eval_accuracy": 0.5}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = {"steps": 1}
    part = run("oreal", 0, [0], [0.0])
    part["run_dir"] = str(run_dir)
    (tmp_path / "a.json").write_text(
        json.dumps({"settings": settings, "runs": {"oreal/seed0": part}})
    )
    merged = ablation.merge_outputs([tmp_path / "a.json"], settings)
    per_step = merged["runs"]["oreal/seed0"]["per_step"]
    assert per_step["reward_mean"] == [0.25] and per_step["rm_auc"] == [0.75]
    assert per_step["response_length"] == [None]


def test_merge_joins_disjoint_parts_and_refuses_mismatches(
    ablation: ModuleType, tmp_path: Path
) -> None:
    settings = {"steps": 5, "budget": "policy"}
    parts = []
    for name, key in (("a", "oreal/seed0"), ("b", "grpo/seed0")):
        path = tmp_path / f"{name}.json"
        variant = key.split("/")[0]
        document = {"settings": settings, "runs": {key: run(variant, 0, [0], [0.0])}}
        path.write_text(json.dumps(document))
        parts.append(path)
    merged = ablation.merge_outputs(parts, settings)
    assert sorted(merged["runs"]) == ["grpo/seed0", "oreal/seed0"]

    with pytest.raises(SystemExit, match="repeats runs"):
        ablation.merge_outputs([parts[0], parts[0]], settings)
    with pytest.raises(SystemExit, match="settings"):
        ablation.merge_outputs(parts, {**settings, "steps": 6})
    with pytest.raises(SystemExit, match="does not exist"):
        ablation.merge_outputs([tmp_path / "missing.json"], settings)


def test_the_prepared_gpu_script_runs_on_a_tiny_shape(tmp_path: Path) -> None:
    """benchmarks/gpu_update_mfu.py is the first GPU session's check: keep it runnable."""
    import subprocess
    import sys

    out = tmp_path / "mfu.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_update_mfu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--shape", "tiny", "--steps", "1", "--rows", "2",
         "--length", "16", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["tokens_per_step"] == 32 and 0 < result["mfu"] < 1
