"""The framework adapters, called directly with the argument shapes TRL, verl and OpenRLHF pass
(no framework installed needed). TRL itself is exercised in test_integrations_trl.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import oreal.integrations.openrlhf as openrlhf_module
import oreal.integrations.verl as verl_module
from oreal.integrations._common import completion_text
from oreal.integrations.openrlhf import make_reward_func as openrlhf_reward
from oreal.integrations.openrlhf import response_of, reward_func
from oreal.integrations.trl import make_reward_func, oreal_accuracy
from oreal.integrations.verl import compute_score, compute_score_batch

# (gold, response, correct): correct answers, equivalent forms, and four reward hacks that TRL's
# accuracy_reward accepts (docs/integrations.md): restating the question's arithmetic, and a
# negated box.
CASES: list[tuple[str, str, bool]] = [
    ("36", r"97 - 61 = 36, so \boxed{36}", True),
    ("\\frac{1}{2}", r"so \boxed{0.5}", True),
    ("x^2+2x+1", r"\boxed{(x+1)^2}", True),
    ("36", r"\boxed{97 - 61}", False),
    ("54", r"\boxed{7 + 47}", False),
    ("4", r"\boxed{2+2}", False),
    ("70", r"The answer is not \boxed{70}", False),
    ("5", "The answer is 5.", False),  # strict: no box, no answer
]
GOLDS = [c[0] for c in CASES]
RESPONSES = [c[1] for c in CASES]
EXPECTED = [1.0 if c[2] else 0.0 for c in CASES]


def test_completion_text_reads_strings_and_conversations() -> None:
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    conversation = [
        {"role": "assistant", "content": "call a tool"},
        {"role": "tool", "content": r"\boxed{1}"},
        {"role": "assistant", "content": [{"type": "text", "text": r"so \boxed{"}, "2}"]},
    ]
    assert completion_text(conversation) == r"so \boxed{2}"
    assert completion_text([]) == completion_text([{"role": "tool", "content": "5"}]) == ""
    with pytest.raises(TypeError, match="completion must be a string or a list of chat messages"):
        completion_text(42)


# -- TRL -----------------------------------------------------------------------------------
def test_trl_reward_on_standard_and_conversational_completions() -> None:
    assert oreal_accuracy.__name__ == "oreal_accuracy"
    standard = oreal_accuracy(prompts=["q"] * len(CASES), completions=RESPONSES, answer=GOLDS)
    conversational = oreal_accuracy(
        prompts=[[{"role": "user", "content": "q"}]] * len(CASES),
        completions=[[{"role": "assistant", "content": r}] for r in RESPONSES],
        completion_ids=[[1, 2]] * len(CASES),
        answer=GOLDS,
        trainer_state=object(),
        log_metric=lambda name, value: None,
    )
    assert standard == conversational == EXPECTED


def test_trl_reward_logs_reasons_and_skips_an_empty_gold() -> None:
    logged: dict[str, list[Any]] = {}
    reward = make_reward_func("solution", mode="lenient", name="oreal_lenient")
    rewards = reward(
        prompts=["q", "q", "q"],
        completions=["The answer is 5.", r"\boxed{6}", r"\boxed{6}"],
        solution=["5", "5", ""],
        log_extra=lambda column, values: logged.__setitem__(column, values),
    )
    assert rewards == [1.0, 0.0, None]
    assert logged["oreal_lenient_reason"] == ["match", "mismatch", "invalid_gold"]
    assert logged["oreal_lenient_extracted"] == ["5", "6", None]  # the gold is checked first
    assert reward.__name__ == "oreal_lenient"


def test_trl_reward_names_the_missing_gold_column() -> None:
    with pytest.raises(KeyError, match=r"no column 'answer'.*columns: solution"):
        oreal_accuracy(prompts=["q"], completions=["x"], solution=["1"], trainer_state=None)


# -- verl ----------------------------------------------------------------------------------
def _load_by_path(path: str, name: str) -> Any:
    """What verl's load_extern_object does: import the file under a fresh module name."""
    spec = importlib.util.spec_from_file_location(f"custom_module_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_verl_compute_score_by_file_path_and_name() -> None:
    score_fn = _load_by_path(verl_module.__file__, "compute_score")
    results = [
        score_fn(
            data_source="openai/gsm8k",
            solution_str=response,
            ground_truth=gold,
            extra_info={"index": i, "num_turns": None},
        )
        for i, (gold, response) in enumerate(zip(GOLDS, RESPONSES, strict=True))
    ]
    assert [r["score"] for r in results] == EXPECTED
    assert [r["acc"] for r in results] == [e == 1.0 for e in EXPECTED]
    assert results[3] == {"score": 0.0, "acc": False, "pred": "97 - 61", "reason": "unevaluated"}
    assert results[-1]["pred"] == ""  # a string, never None: verl's metrics read this column
    # reward_kwargs from the config arrive as keyword arguments
    lenient = compute_score("x", "The answer is 5.", "5", None, mode="lenient", other=1)
    assert lenient["score"] == 1.0


def test_verl_ground_truth_as_number_list_or_array() -> None:
    assert compute_score("s", r"\boxed{7}", 7)["score"] == 1.0
    assert compute_score("s", r"\boxed{3, 5}", ["5", "3"])["score"] == 1.0
    assert compute_score("s", r"\boxed{3, 5}", np.array(["5", "3"]))["score"] == 1.0
    assert compute_score("s", r"\boxed{3}", None)["reason"] == "invalid_gold"


def test_verl_batch_form() -> None:
    results = compute_score_batch(
        data_sources=["d"] * len(CASES),
        solution_strs=RESPONSES,
        ground_truths=GOLDS,
        extra_infos=[{}] * len(CASES),
    )
    assert [r["score"] for r in results] == EXPECTED
    with pytest.raises(ValueError, match="2 solutions but 1 ground truths"):
        compute_score_batch(["d", "d"], ["a", "b"], ["1"])


# -- OpenRLHF ------------------------------------------------------------------------------
def test_openrlhf_reward_func_by_file_path() -> None:
    loaded = _load_by_path(openrlhf_module.__file__, "reward_func")
    prompts = [f"<|im_start|>user\nproblem {i}<|im_end|>\n" for i in range(len(CASES))]
    queries = [f"<s>{p}{r}<|im_end|>" for p, r in zip(prompts, RESPONSES, strict=True)]
    out = loaded(queries, prompts, GOLDS)
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert isinstance(out["rewards"], torch.Tensor) and out["rewards"].tolist() == EXPECTED
    assert out["scores"].tolist() == EXPECTED  # in [0, 1], for dynamic filtering
    accuracy = out["extra_logs"]["oreal_accuracy"]
    assert accuracy.item() == pytest.approx(sum(EXPECTED) / len(EXPECTED))


def test_openrlhf_one_sample_per_call_as_its_executor_does() -> None:
    """OpenRLHF calls reward_func once per sample, from a thread: lists of length one."""
    out = reward_func([r"<s>Q: 2+2? A: so \boxed{4}"], ["Q: 2+2? A:"], ["4"])
    assert out["rewards"].tolist() == [1.0]
    value = out["extra_logs"]["oreal_accuracy"]
    assert torch.tensor([value.flatten()[0].item()]).tolist() == [1.0]  # its conversion
    assert response_of("<s>prompt answer", "prompt") == " answer"
    assert response_of(r"no prompt here \boxed{1}", "missing") == r"no prompt here \boxed{1}"
    lenient = openrlhf_reward(mode="lenient")
    assert lenient(["Q? The answer is 5."], ["Q?"], ["5"])["rewards"].tolist() == [1.0]
    with pytest.raises(ValueError, match="2 queries, 1 prompts and 1 labels"):
        reward_func(["a", "b"], ["p"], ["1"])


def test_every_adapter_survives_hostile_responses(tmp_path: Path) -> None:
    hostile = ["\\boxed{" * 1000 + "5" + "}" * 1000, "\udcff \\boxed{5}", "\x00", ""]
    golds = ["5"] * len(hostile)
    assert oreal_accuracy(prompts=golds, completions=hostile, answer=golds) == [1.0, 1.0, 0.0, 0.0]
    assert [r["score"] for r in compute_score_batch(golds, hostile, golds)] == [1.0, 1.0, 0.0, 0.0]
    assert reward_func(hostile, [""] * 4, golds)["rewards"].tolist() == [1.0, 1.0, 0.0, 0.0]
