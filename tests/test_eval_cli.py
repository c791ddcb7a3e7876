"""``oreal eval`` through typer's test runner: output files, model resolution, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oreal.cli.eval import eval_command
from oreal.eval import default_ks, resolve_model
from oreal.eval.runner import run_template
from oreal.runs import ModelPathError

runner = CliRunner()
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(eval_command)

RECORD_FIELDS = {
    "benchmark", "problem_id", "sample", "prompt", "response", "gold", "extracted", "correct",
    "reason", "response_tokens", "truncated", "finish_reason",
}  # fmt: skip


def test_end_to_end_on_a_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(tiny_model_dir), "--benchmarks", "math500", "--limit", "4", "--max-new-tokens", "8"]
    result = runner.invoke(app, [*args, "--out", str(out), "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "results.json", "report.md", "generations.jsonl", "pass_at_k.png", "settings.json",
    }  # fmt: skip

    document = json.loads((out / "results.json").read_text())
    assert document["model"] == str(tiny_model_dir) and document["wall_time_s"] > 0
    assert document["settings"]["template"] == "chat" and document["settings"]["n"] == 1
    entry = document["benchmarks"]["math500"]
    assert entry["num_problems"] == 4 and entry["n"] == 1 and entry["num_samples"] == 4
    assert entry["sampling"] == {
        "n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 8, "seed": 0,
        "stop": [],
    }  # fmt: skip
    assert entry["accuracy"] == entry["pass_at_k"]["1"] == 0.0  # random weights, 8 tokens
    assert set(entry["maj_at_k"]) == {"1"}
    assert 1 <= entry["mean_response_tokens"] <= 8 and 0 <= entry["truncation_rate"] <= 1
    assert sum(row["num_problems"] for row in entry["by_level"].values()) == 4
    assert sum(row["num_problems"] for row in entry["by_subject"].values()) == 4
    assert entry["wall_time_s"] > 0

    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(set(r) >= RECORD_FIELDS for r in records)
    assert {r["sample"] for r in records} == {0} and all(r["correct"] is False for r in records)
    assert all(r["response_tokens"] <= 8 for r in records)
    assert all("<|im_start|>assistant" in r["prompt"] for r in records)

    report = (out / "report.md").read_text()
    assert "## math500" in report and "temperature=0.0" in report and "max_new_tokens=8" in report
    assert "By level" in report and "By subject" in report
    assert (out / "pass_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "math500" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "2", "--temperature", "1", "--k", "1,4"], "between 1 and n=2"),
        (["--n", "4"], "--temperature 0"),
        (["--benchmarks", "math500,math5000"], "unknown data source 'math5000'"),
        (["--template", "qwen"], "unknown prompt template"),
        (["--mode", "loose"], "strict"),
        (["--k", "one"], "comma-separated integers"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_inputs_exit_2_and_write_nothing(
    tiny_model_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [str(tiny_model_dir), "--out", str(out), "--limit", "1", *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_missing_model_path_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [str(tmp_path / "no-such-model"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "model path not found" in " ".join(result.output.split())
    assert not out.exists()


def test_existing_output_needs_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text("{}")
    result = runner.invoke(app, [str(tiny_model_dir), "--out", str(tmp_path), "--limit", "1"])
    assert result.exit_code == 2
    assert "--resume" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_run_directories_resolve_to_the_latest_checkpoint(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    for step in ("step-000002", "step-000010", "step-000012"):
        policy = run / "checkpoints" / step / "policy"
        policy.mkdir(parents=True)
        (policy / "config.json").write_text("{}")
        if step != "step-000012":  # no trainer_state.json: not a complete checkpoint
            (run / "checkpoints" / step / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / "step-000011.tmp").mkdir()  # an interrupted save is ignored
    (run / "config.yaml").write_text("data:\n  template: plain\n")
    latest = run / "checkpoints" / "step-000010" / "policy"
    assert resolve_model(str(run)) == (str(latest), run)
    step2 = run / "checkpoints" / "step-000002"
    assert resolve_model(str(step2)) == (str(step2 / "policy"), run)
    assert resolve_model(str(tiny_model_dir)) == (str(tiny_model_dir), None)
    assert resolve_model("embedded") == ("embedded", None)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")[1] is None
    assert run_template(run) == "plain" and run_template(None) is None
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ModelPathError, match="no checkpoints"):
        resolve_model(str(tmp_path / "empty-run"))
    with pytest.raises(ModelPathError, match="neither"):
        resolve_model(str(tmp_path))


def test_default_ks() -> None:
    assert default_ks(1) == [1]
    assert default_ks(8) == [1, 2, 4, 8]
    assert default_ks(6) == [1, 2, 4, 6]


def test_registered_in_the_root_app() -> None:
    from oreal.cli import app as root

    result = runner.invoke(root, ["eval", "--help"])
    assert result.exit_code == 0, result.output
    assert "--benchmarks" in result.output and "--resume" in result.output


def test_fast_and_transformers_backends_agree_in_fp32(tiny_model_dir: Path, tmp_path: Path) -> None:
    """--backend fast (the default on a CPU) and --backend hf: the same greedy generations."""
    base = [str(tiny_model_dir), "--benchmarks", "math500", "--limit", "5", "--no-autocast",
            "--max-new-tokens", "12"]  # fmt: skip
    responses = {}
    for backend in ("fast", "hf"):
        out = tmp_path / backend
        result = runner.invoke(app, [*base, "--backend", backend, "--out", str(out)])
        assert result.exit_code == 0, result.output
        lines = (out / "generations.jsonl").read_text().splitlines()
        responses[backend] = sorted(
            (r["problem_id"], r["response"]) for r in map(json.loads, lines)
        )
    assert responses["fast"] == responses["hf"]
    bad = runner.invoke(app, [*base, "--backend", "vllm", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--backend must be" in bad.output
