"""Scorers: the Qwen2.5-Math-PRM format, the outcome RM, OREAL's token RM, likelihood, oracle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from oreal.data import Problem
from oreal.search.scorers import ScoreRequest, ScorerSpecError, scorer_kind, solution_scores
from oreal.search.scorers.reward_models import (
    STEP_TAG,
    OutcomeRMScorer,
    ProcessRMScorer,
    save_tiny_prm,
)
from oreal.search.scorers.token_level import LikelihoodScorer, TokenRMScorer, token_layout

PROBLEM = Problem(id="p", question="What is 2 + 3?", answer="5")


@pytest.fixture(scope="module")
def tiny_prm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_prm(tmp_path_factory.mktemp("prm") / "prm")


def test_the_prm_checkpoint_has_the_released_layout(tiny_prm_dir: Path) -> None:
    import json

    from safetensors import safe_open

    config = json.loads((tiny_prm_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForProcessRewardModel"]
    with safe_open(str(tiny_prm_dir / "model.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"} <= keys
    assert "model.embed_tokens.weight" in keys
    assert scorer_kind(str(tiny_prm_dir)) == "prm"


def test_prm_scores_are_softmax_1_at_each_step_tag(tiny_prm_dir: Path) -> None:
    scorer = ProcessRMScorer.from_path(tiny_prm_dir, device="cpu")
    steps = ("2 + 3 = 5.", "So the answer is \\boxed{5}.")
    requests = [ScoreRequest("ignored", steps, PROBLEM, "eos"), ScoreRequest("x", ("2",), PROBLEM)]
    scores = scorer.score(requests)
    assert [len(s) for s in scores] == [2, 1]
    messages = [
        {"role": "system", "content": "Please reason step by step, and put your final answer "
         "within \\boxed{}."},
        {"role": "user", "content": PROBLEM.question},
        {"role": "assistant", "content": f"{steps[0]}{STEP_TAG}{steps[1]}{STEP_TAG}"},
    ]  # fmt: skip
    text = scorer.tokenizer.apply_chat_template(messages, tokenize=False)
    ids = torch.tensor([scorer.tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = scorer.model(input_ids=ids)
    tags = ids[0] == scorer.tokenizer.convert_tokens_to_ids(STEP_TAG)
    assert int(tags.sum()) == 2
    expected = torch.softmax(logits[0, tags].float(), dim=-1)[:, 1].tolist()
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    # 'model' aggregation hands the PRM the whole solution as one step: one tag, one score.
    values, raw = solution_scores(scorer, requests[:1], "model")
    assert len(raw[0]) == 1 and values[0] == raw[0][0]
    with pytest.raises(ValueError, match="question"):
        scorer.score([ScoreRequest("x", ("2",))])


def test_outcome_rm_reads_the_last_token_whatever_the_padding(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from oreal.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "orm")
    tokenizer.save_pretrained(tmp_path / "orm")
    assert scorer_kind(str(tmp_path / "orm")) == "orm"
    scorer = OutcomeRMScorer.from_path(tmp_path / "orm", device="cpu")
    requests = [
        ScoreRequest("p", ("short",), PROBLEM, "eos"),
        ScoreRequest("p", ("a much longer answer", "\\boxed{5}"), PROBLEM, "eos"),
    ]
    batched = scorer.score(requests)
    alone = [scorer.score([r])[0][0] for r in requests]
    assert all(len(s) == 1 for s in batched)
    assert [s[0] for s in batched] == pytest.approx(alone, abs=1e-5)
    conversation = [{"role": "user", "content": PROBLEM.question},
                    {"role": "assistant", "content": "short"}]  # fmt: skip
    text = scorer.tokenizer.apply_chat_template(conversation, tokenize=False)
    ids = torch.tensor([scorer.tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        own = torch.sigmoid(scorer.model(input_ids=ids).logits[0, 0]).item()
    assert batched[0][0] == pytest.approx(own, abs=1e-5)


def test_step_ends_are_read_at_separators_and_at_eos() -> None:
    from oreal.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()  # one token per character
    partial = token_layout(tokenizer, ScoreRequest("Q:", ("ab", "cde")), eos_token_id=2)
    assert tokenizer.decode(partial.response_ids) == "ab\n\ncde\n\n"
    assert partial.step_ends == [3, 8]  # the last "\n" of each step's separator
    done = token_layout(tokenizer, ScoreRequest("Q:", ("ab", "cde"), finish="eos"), 2)
    assert done.response_ids[-1] == 2 and done.step_ends == [3, 7]
    stopped = token_layout(tokenizer, ScoreRequest("Q:", ("ab", "cde"), finish="stop"), 2)
    assert stopped.step_ends == [3, 6]


def test_likelihood_is_the_geometric_mean_token_probability_so_far() -> None:
    from oreal.batch import pad_rollouts
    from oreal.models import build_tiny_model, build_tiny_tokenizer, naive_token_logprobs

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    scorer = LikelihoodScorer(model, tokenizer, autocast=False)
    request = ScoreRequest("Q: 1+1?", ("1+1=2", "\\boxed{2}"), finish="eos")
    (scores,) = scorer.score([request])
    layout = token_layout(tokenizer, request, tokenizer.eos_token_id)
    tensors = pad_rollouts([(layout.prompt_ids, layout.response_ids)], tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = naive_token_logprobs(
            model, tensors.input_ids, tensors.attention_mask, tensors.response_mask
        )
    for score, end in zip(scores, layout.step_ends, strict=True):
        assert score == pytest.approx(torch.exp(logp[0, : end + 1].mean()).item(), rel=1e-4)


def test_the_token_rm_of_a_run_scores_steps_with_the_runs_own_q(
    tiny_rm_config: Callable[..., object], tmp_path: Path
) -> None:
    from oreal.batch import pad_rollouts
    from oreal.token_rm.weights import sequence_logits
    from oreal.train import Trainer

    trainer = Trainer(args=tiny_rm_config(tmp_path / "run", "train.steps=3"))  # type: ignore[operator]
    trainer.train()
    assert scorer_kind(str(tmp_path / "run")) == "token_rm"
    scorer = TokenRMScorer.from_path(tmp_path / "run", autocast=False)
    assert scorer.weight_source == "cumulative_mean"
    request = ScoreRequest("Q: 2+3?", ("2+3=5", "so 7"), finish="eos")
    partial = ScoreRequest("Q: 2+3?", ("2+3=5",))
    full_scores, partial_scores = scorer.score([request, partial])
    layout = token_layout(scorer.tokenizer, request, scorer.tokenizer.eos_token_id)
    tensors = pad_rollouts([(layout.prompt_ids, layout.response_ids)], 0)
    with torch.no_grad():
        h = scorer.model(
            tensors.input_ids, tensors.attention_mask, tensors.response_mask,
            score_position=scorer.score_position,
        )  # fmt: skip
    # The last step of a finished solution reads σ(h̄), the quantity the RM's BCE is trained on.
    expected = torch.sigmoid(sequence_logits(h, tensors.loss_mask))[0].item()
    assert full_scores[-1] == pytest.approx(expected, abs=1e-5)
    assert abs(full_scores[-1] - 0.5) > 1e-4  # trained: the head moved away from zero
    # A causal RM: the first step's score does not depend on what follows it.
    assert partial_scores[0] == pytest.approx(full_scores[0], abs=1e-5)


def test_the_oracle_scores_correct_1_undecided_half_wrong_0() -> None:
    from oreal.search.scorers.oracle import OracleScorer
    from oreal.verify import Verifier

    with Verifier(workers=1) as verifier:
        scores = OracleScorer(verifier).score(
            [
                ScoreRequest("p", ("2 + 3 = 5", "\\boxed{5}"), PROBLEM, "eos"),
                ScoreRequest("p", ("2 + 3 is",), PROBLEM),
                ScoreRequest("p", ("\\boxed{6}",), PROBLEM),
                ScoreRequest("p", ("no answer",), PROBLEM, "eos"),
                ScoreRequest("p", ("\\boxed{5}",), PROBLEM, "length"),
            ]
        )
    assert scores == [[1.0], [0.5], [0.0], [0.0], [0.0]]


def test_scorer_specs_that_name_nothing_fail_clearly(tmp_path: Path) -> None:
    assert scorer_kind("verifier") == "verifier" and scorer_kind("likelihood") == "likelihood"
    with pytest.raises(ScorerSpecError, match="not found"):
        scorer_kind(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    with pytest.raises(ScorerSpecError, match="LlamaForCausalLM"):
        scorer_kind(str(tmp_path))
