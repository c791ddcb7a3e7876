"""Data parallelism: 2 gloo ranks (torchrun) train exactly what one process trains.

Given the same global batch of rollouts (a scripted engine: responses are a function of the
prompt and the sample index), the policy after 2 updates must equal the one-process policy
within 1e-5 (max abs weight difference), for OREAL with and without the token RM and for
GRPO; and only the main rank writes the run directory. With the keyed CPU engine the rollouts
themselves are the same on 1 and 2 ranks, so a whole run matches too (``oreal_sampled``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).resolve().parent / "helpers" / "dp_worker.py"
# name: steps (RM: 1 frozen + 2); oreal_sampled samples with the keyed CPU engine, end to end
VARIANTS = {"oreal": 2, "oreal_token_rm": 3, "grpo": 2, "oreal_sampled": 2}
RESUMED = "oreal_token_rm_resumed"  # trains 1 step, saves, resumes for the other 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(ranks: int, model_dir: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(WORKER), str(model_dir), str(out), *VARIANTS, RESUMED]
    if ranks > 1:
        command = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
            f"--master_port={free_port()}", *command[1:],
        ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("dp")
    launch(1, tiny_model_dir, root / "one")
    launch(2, tiny_model_dir, root / "two")
    return {1: root / "one", 2: root / "two"}


def final(run_dir: Path, steps: int, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"step-{steps:06d}" / name))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_ranks_train_what_one_trains(
    runs: dict[int, Path], tiny_model_dir: Path, variant: str
) -> None:
    steps = VARIANTS[variant]
    one = final(runs[1] / variant, steps, "policy/model.safetensors")
    two = final(runs[2] / variant, steps, "policy/model.safetensors")
    initial = load_file(str(tiny_model_dir / "model.safetensors"))
    moved = max(float((one[k] - initial[k]).abs().max()) for k in one)
    assert moved > 1e-4, "training did not move the policy: the comparison would prove nothing"
    difference = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert difference < 1e-5, f"max |1-rank - 2-rank| = {difference:.2e}"
    if variant == "oreal_token_rm":
        rm_one = final(runs[1] / variant, steps, "token_rm.safetensors")
        rm_two = final(runs[2] / variant, steps, "token_rm.safetensors")
        assert max(float((rm_one[k] - rm_two[k]).abs().max()) for k in rm_one) < 1e-5


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_main_rank_alone_writes_the_run(runs: dict[int, Path], variant: str) -> None:
    logs = {}
    for ranks, root in runs.items():
        lines = (root / variant / "metrics.jsonl").read_text().splitlines()
        logs[ranks] = [json.loads(line) for line in lines]
    assert [r["step"] for r in logs[2]] == list(range(1, VARIANTS[variant] + 1))  # not twice
    for one, two in zip(logs[1], logs[2], strict=True):  # global metrics, not rank 0's share
        for key in ("reward_mean", "sequences_kept", "pass_rate", "response_length"):
            assert one[key] == pytest.approx(two[key], abs=1e-9), key
        if "loss" in one:
            assert one["loss"] == pytest.approx(two["loss"], rel=1e-4, abs=1e-6)
    checkpoints = sorted(p.name for p in (runs[2] / variant / "checkpoints").iterdir())
    assert checkpoints == [f"step-{VARIANTS[variant]:06d}"]


def test_a_resumed_two_rank_run_is_exact(runs: dict[int, Path]) -> None:
    """Kill-free resume under data parallelism: save after step 1, a new 2-rank trainer resumes
    and ends bit-identical to the uninterrupted 2-rank run (weights and token RM)."""
    steps = VARIANTS["oreal_token_rm"]
    for name in ("policy/model.safetensors", "token_rm.safetensors"):
        straight = final(runs[2] / "oreal_token_rm", steps, name)
        resumed = final(runs[2] / RESUMED, steps, name)
        for key in straight:
            assert torch.equal(straight[key], resumed[key]), (name, key)
    logged = (runs[2] / RESUMED / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [2, 3]
