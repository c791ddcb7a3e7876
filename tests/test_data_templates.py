"""Prompt templates rendered through an offline tokenizer with a ChatML-style chat template."""

from __future__ import annotations

import pytest

from oreal.data import (
    COT_INSTRUCTION,
    Problem,
    TemplateError,
    build_messages,
    list_templates,
    render_prompt,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<turn>{{ m['content'] }}</turn>{% endfor %}"
)


def make_tokenizer(chat_template: str | None):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    model = tokenizers.models.WordLevel({"[UNK]": 0, "What": 1}, unk_token="[UNK]")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture(scope="module")
def chatml():
    return make_tokenizer(CHATML)


def test_registry() -> None:
    assert [t.name for t in list_templates()] == [
        "qwen_math_cot",
        "chat",
        "plain",
        "boxed_short",
        "boxed_example",
    ]
    assert COT_INSTRUCTION == (
        "Please reason step by step, and put your final answer within \\boxed{}."
    )


def test_qwen_math_cot_matches_qwen25_math_cot(chatml) -> None:
    # Qwen2.5-Math evaluation/utils.py, PROMPT_TEMPLATES["qwen25-math-cot"].
    expected = (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render_prompt("What is 1 + 1?", chatml, "qwen_math_cot") == expected


def test_chat_and_boxed_short(chatml) -> None:
    problem = Problem(id="p", question="What is {x}?", answer="1")
    chat = render_prompt(problem, chatml)
    assert chat == (
        "<|im_start|>user\nWhat is {x}?\n" + COT_INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n"
    )
    short = render_prompt(problem, chatml, template="boxed_short")
    assert "What is {x}?\nPut your final answer within \\boxed{}.<|im_end|>" in short
    assert "step by step" not in short


def test_plain_needs_no_tokenizer() -> None:
    assert render_prompt("What is 2 + 3?", None, "plain") == "Question: What is 2 + 3?\nAnswer:"


def test_errors(chatml) -> None:
    with pytest.raises(TemplateError, match="use template='plain'"):
        render_prompt("Q", make_tokenizer(None), "chat")
    with pytest.raises(TemplateError, match="use template='plain'"):
        render_prompt("Q", None, "boxed_short")
    with pytest.raises(TemplateError, match="Did you mean 'chat'"):
        render_prompt("Q", chatml, "caht")
    with pytest.raises(TemplateError, match=r"System role not supported.*template='chat'"):
        render_prompt("Q", make_tokenizer(NO_SYSTEM), "qwen_math_cot")
    assert render_prompt("Q", make_tokenizer(NO_SYSTEM), "chat").startswith("<turn>Q\n")
    with pytest.raises(TypeError):
        render_prompt(42, chatml)  # type: ignore[arg-type]


def test_build_messages() -> None:
    assert build_messages("Q", "qwen_math_cot") == [
        {"role": "system", "content": COT_INSTRUCTION},
        {"role": "user", "content": "Q"},
    ]
    assert build_messages("Q", "chat") == [{"role": "user", "content": "Q\n" + COT_INSTRUCTION}]
    with pytest.raises(TemplateError, match="plain text"):
        build_messages("Q", "plain")
