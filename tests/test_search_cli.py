"""``oreal search`` end to end on tiny random models: every method, every scorer kind, resume,
and bad inputs (exit code 2, one line, nothing written)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oreal.cli.search import search_command, split_benchmarks
from oreal.search import METHODS
from oreal.search.scorers.reward_models import save_tiny_prm

runner = CliRunner()
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(search_command)

TINY = ["--limit", "2", "--max-new-tokens", "10", "--max-steps", "3", "--batch-size", "2"]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_every_method_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run(
        str(tiny_model_dir), "-b", "math500", "--method", "all", "--budget", "1,4",
        "--scorer", "likelihood", "--aggregation", "min", "--out", str(out), *TINY,
    )  # fmt: skip
    assert code == 0, output
    assert {p.name for p in out.iterdir()} == {
        "results.json", "report.md", "generations.jsonl", "accuracy_vs_budget.png",
        "settings.json",
    }  # fmt: skip
    document = json.loads((out / "results.json").read_text())
    runs = document["benchmarks"]["math500"]
    assert list(runs) == list(METHODS)
    assert set(runs["particle_gibbs"]["1"]) == {"skipped"}
    assert "multiple of 2" in runs["particle_gibbs"]["1"]["skipped"]
    for method, budgets in runs.items():
        for budget, entry in budgets.items():
            if "skipped" in entry:
                continue
            assert entry["num_problems"] == 2 and entry["n"] == 1, (method, budget)
            compute = entry["compute"]
            assert compute["generated_sequences_per_problem"] >= int(budget) - (
                method == "particle_gibbs"
            )
            assert compute["generated_tokens_per_problem"] <= 10 * 3 * 16  # tokens x steps x rows
            assert (compute["scored_sequences_per_problem"] == 0) == (method == "majority")
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 2 * (len(METHODS) * 2 - 1)
    assert all({"method", "budget", "search", "correct", "response"} <= set(r) for r in records)
    assert all(r["response_tokens"] <= 10 for r in records)
    report = (out / "report.md").read_text()
    assert "| particle_gibbs | n/a |" in report and "generated tokens" in report
    assert "aggregation=min" in report
    assert (out / "accuracy_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_training_runs_policy_with_its_token_rm_as_the_prm(
    tiny_rm_config: Callable[..., object], tmp_path: Path
) -> None:
    from oreal.train import Trainer

    Trainer(args=tiny_rm_config(tmp_path / "run", "train.steps=3")).train()  # type: ignore[operator]
    out = tmp_path / "out"
    code, output = run(
        str(tmp_path / "run"), "-b", "math500", "--method", "particle_filtering,beam_search",
        "--budget", "2", "--scorer", str(tmp_path / "run"), "--out", str(out), *TINY,
    )  # fmt: skip
    assert code == 0, output
    document = json.loads((out / "results.json").read_text())
    assert document["scorer_kind"] == "token_rm"
    assert document["settings"]["template"] == "boxed_short"  # the run's own template
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert all(0 < r["search"]["score"] < 1 for r in records)


def test_a_qwen_format_prm_and_the_verifier_as_scorers(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    prm = save_tiny_prm(tmp_path / "prm")
    for scorer, method in ((str(prm), "dvts"), ("verifier", "best_of_n,weighted_majority")):
        out = tmp_path / f"out-{method}"
        code, output = run(
            str(tiny_model_dir), "-b", "gsm8k", "--method", method, "--budget", "4",
            "--scorer", scorer, "--out", str(out), *TINY,
        )  # fmt: skip
        assert code == 0, output
        records = [
            json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()
        ]
        assert len(records) == 2 * len(method.split(","))
        assert all(r["search"]["scored_sequences"] >= 4 for r in records)


def test_resume_completes_an_interrupted_search_identically(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    args = [
        str(tiny_model_dir), "-b", "math500", "--method", "majority,particle_filtering",
        "--budget", "1,2", "--scorer", "likelihood", *TINY,
    ]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(*args, "--out", str(full))[0] == 0
    assert run(*args, "--out", str(cut))[0] == 0
    lines = (cut / "generations.jsonl").read_text().splitlines()
    (cut / "generations.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    code, output = run(*args, "--out", str(cut))
    assert code == 2 and "--resume" in output  # never overwrite an existing search silently
    code, output = run(*args, "--out", str(cut), "--resume")
    assert code == 0, output
    done = json.loads((cut / "results.json").read_text())["benchmarks"]["math500"]
    again = json.loads((full / "results.json").read_text())["benchmarks"]["math500"]
    for method in ("majority", "particle_filtering"):
        for budget in ("1", "2"):
            assert done[method][budget]["accuracy"] == again[method][budget]["accuracy"]
            assert (
                done[method][budget]["compute"]["generated_tokens_per_problem"]
                == (again[method][budget]["compute"]["generated_tokens_per_problem"])
            )
    assert sum(e["resumed_samples"] for b in done.values() for e in b.values()) == 3
    responses = sorted(line for line in (cut / "generations.jsonl").read_text().splitlines())
    expected = sorted((full / "generations.jsonl").read_text().splitlines())
    strip = [json.loads(x) for x in responses], [json.loads(x) for x in expected]
    assert [r["response"] for r in strip[0]] == [r["response"] for r in strip[1]]
    code, output = run(*args[:-2], "--batch-size", "1", "--out", str(cut), "--resume")
    assert code == 2 and "batch_size" in output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "mcts"], "unknown --method mcts"),
        (["--method", "best_of_n"], "need a --scorer"),
        (["--method", "best_of_n", "--scorer", "verifier", "--aggregation", "min"], "judges whole"),
        (["--method", "particle_gibbs", "--scorer", "likelihood", "--budget", "1,2"], "no budget"),
        (["--method", "majority", "--temperature", "0"], "--temperature > 0"),
        (["--method", "majority", "--budget", "0"], "positive integers"),
        (["--method", "best_of_n", "--scorer", "/nonexistent/rm"], "not found"),
        (["--method", "majority", "--template", "nope"], "prompt template"),
        (["--method", "majority", "-b", "nope"], "benchmark 'nope'"),
        (["--method", "majority", "--resume"], "--resume needs --out"),
    ],
)
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(
    tiny_model_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    defaults = {"-b": "math500", "--budget": "4", "--out": str(out)}
    if "--resume" in extra:
        del defaults["--out"]
    given = [*extra, *(x for k, v in defaults.items() if k not in extra for x in (k, v))]
    code, output = run(str(tiny_model_dir), *given, *TINY)
    assert code == 2, output
    assert message in " ".join(output.split()) and "Traceback" not in output
    assert not out.exists()


def test_benchmark_lists_keep_commas_inside_synthetic_specs() -> None:
    spec = "synthetic:arithmetic?n=8&ops=add,sub&seed=1"
    assert split_benchmarks(f"{spec},math500, gsm8k") == [spec, "math500", "gsm8k"]
    assert split_benchmarks("math500,,gsm8k") == ["math500", "gsm8k"]
