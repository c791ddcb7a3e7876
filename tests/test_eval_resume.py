"""An interrupted ``oreal eval`` resumed with --resume gives the results of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oreal.eval import EvalInputError, EvalSettings, run_evaluation
from oreal.eval.runner import GenerationsLog

# Volatile fields: timings and how many samples came from an earlier session.
VOLATILE = {"wall_time_s", "started_at", "resumed_samples"}


def settings_for(model: Path, **overrides: Any) -> EvalSettings:
    """Sampled (n = 2, T = 1), one problem per chunk, two benchmarks: several chunks to cut."""
    values: dict[str, Any] = {
        "model": str(model),
        "model_path": str(model),
        "benchmarks": ["math500", "gsm8k"],
        "n": 2,
        "ks": [1, 2],
        "temperature": 1.0,
        "max_new_tokens": 6,
        "limit": 3,
        "batch_size": 2,
        "seed": 7,
    }
    values.update(overrides)
    return EvalSettings(**values)


def stable(document: Any) -> Any:
    """The document without timing fields, at any depth."""
    if isinstance(document, dict):
        return {k: stable(v) for k, v in document.items() if k not in VOLATILE}
    if isinstance(document, list):
        return [stable(v) for v in document]
    return document


def generations(out: Path) -> dict[tuple[str, str, int], str]:
    records = GenerationsLog(out / "generations.jsonl").read()
    return {(r["benchmark"], r["problem_id"], r["sample"]): r["response"] for r in records}


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    run_evaluation(settings_for(tiny_model_dir), out, progress=False)
    return out


def test_resume_after_an_interruption(
    tiny_model_dir: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = GenerationsLog.append
    calls = {"n": 0}

    def append_then_die(self: GenerationsLog, records: list[dict[str, Any]]) -> None:
        if calls["n"] == 4:  # math500 done (3 chunks), one gsm8k chunk written
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, records)

    monkeypatch.setattr(GenerationsLog, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(settings_for(tiny_model_dir), tmp_path, progress=False)
    monkeypatch.setattr(GenerationsLog, "append", original)
    assert not (tmp_path / "results.json").exists()
    assert len(generations(tmp_path)) == 4 * 2
    with (tmp_path / "generations.jsonl").open("a") as handle:
        handle.write('{"benchmark": "gsm8k", "problem_id": "gsm8k/2", "sam')  # torn line

    with pytest.raises(EvalInputError, match="--resume"):
        run_evaluation(
            settings_for(tiny_model_dir), tmp_path, progress=False
        )  # no silent overwrite
    document = run_evaluation(settings_for(tiny_model_dir), tmp_path, resume=True, progress=False)

    expected = json.loads((reference / "results.json").read_text())
    assert stable(json.loads((tmp_path / "results.json").read_text())) == stable(expected)
    assert stable(document) == stable(expected)
    assert document["benchmarks"]["gsm8k"]["resumed_samples"] == 2
    assert generations(tmp_path) == generations(reference)
    lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 3 * 2 and all(json.loads(line) for line in lines)


def test_resume_of_a_truncated_log(tiny_model_dir: Path, reference: Path, tmp_path: Path) -> None:
    for name in ("settings.json", "generations.jsonl"):
        (tmp_path / name).write_bytes((reference / name).read_bytes())
    lines = (reference / "generations.jsonl").read_text().splitlines(keepends=True)
    # Keep 5 records and half of the sixth: a chunk partly on disk is generated again whole.
    (tmp_path / "generations.jsonl").write_text("".join(lines[:5]) + lines[5][:30])
    run_evaluation(settings_for(tiny_model_dir), tmp_path, resume=True, progress=False)
    got = json.loads((tmp_path / "results.json").read_text())
    assert stable(got) == stable(json.loads((reference / "results.json").read_text()))
    assert generations(tmp_path) == generations(reference)


def test_resume_refuses_other_settings(
    tiny_model_dir: Path, reference: Path, tmp_path: Path
) -> None:
    (tmp_path / "settings.json").write_bytes((reference / "settings.json").read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(EvalInputError, match=r"max_new_tokens: saved 6, now 7"):
        run_evaluation(settings_for(tiny_model_dir, max_new_tokens=7), tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
