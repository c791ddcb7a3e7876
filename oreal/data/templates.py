"""Prompt templates: how a question becomes the text a policy model continues.

Trainer and evaluator both render prompts here, by template name, so a model is evaluated with
exactly the prompt it was trained on (a mismatch silently costs accuracy). Chat-based templates
go through the tokenizer's own chat template (``apply_chat_template`` with
``add_generation_prompt=True``); ``plain`` is for base models without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oreal.data.records import Problem
from oreal.errors import UserError
from oreal.names import unknown_name_message

__all__ = [
    "COT_INSTRUCTION",
    "SHORT_INSTRUCTION",
    "PromptTemplate",
    "TemplateError",
    "build_messages",
    "get_template",
    "list_templates",
    "render_prompt",
]

COT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
SHORT_INSTRUCTION = "Put your final answer within \\boxed{}."


class TemplateError(UserError):
    """A template that cannot be rendered with this tokenizer (unknown name, no chat template)."""


@dataclass(frozen=True)
class PromptTemplate:
    """A named prompt: an optional system message and the user text around the question.

    With ``chat`` the messages go through the tokenizer's chat template; without it the user
    text is the whole prompt.
    """

    name: str
    description: str
    chat: bool
    system: str | None = None
    prefix: str = ""
    suffix: str = ""

    def user_text(self, question: str) -> str:
        return f"{self.prefix}{question}{self.suffix}"


_TEMPLATES: dict[str, PromptTemplate] = {
    template.name: template
    for template in [
        PromptTemplate(
            name="qwen_math_cot",
            description="Qwen2.5-Math 'qwen25-math-cot': the step-by-step boxed instruction as "
            "system message, the bare question as user message.",
            chat=True,
            system=COT_INSTRUCTION,
        ),
        PromptTemplate(
            name="chat",
            description="The model's chat template; user message = question + step-by-step "
            "boxed instruction.",
            chat=True,
            suffix="\n" + COT_INSTRUCTION,
        ),
        PromptTemplate(
            name="plain",
            description="No chat template: 'Question: ...\\nAnswer:' for base models.",
            chat=False,
            prefix="Question: ",
            suffix="\nAnswer:",
        ),
        PromptTemplate(
            name="boxed_short",
            description="Chat template; question + 'Put your final answer within \\boxed{}.' "
            "without asking for steps (tiny demo models).",
            chat=True,
            suffix="\n" + SHORT_INSTRUCTION,
        ),
        PromptTemplate(
            name="boxed_example",
            description="boxed_short plus a one-line example of the format; a 135M model boxes "
            "its answer three times as often with it (the CPU demo's template).",
            chat=True,
            suffix="\n" + SHORT_INSTRUCTION[:-1] + ", for example: The answer is \\boxed{7}.",
        ),
    ]
}


def list_templates() -> list[PromptTemplate]:
    """Every registered template, in a fixed order."""
    return list(_TEMPLATES.values())


def get_template(name: str) -> PromptTemplate:
    """The template called ``name``; ``TemplateError`` naming the valid ones otherwise."""
    if name not in _TEMPLATES:
        raise TemplateError(unknown_name_message(name, list(_TEMPLATES), "prompt template"))
    return _TEMPLATES[name]


def _question(problem_or_question: Problem | str) -> str:
    if isinstance(problem_or_question, Problem):
        return problem_or_question.question
    if isinstance(problem_or_question, str):
        return problem_or_question
    raise TypeError(f"expected a Problem or a str, got {type(problem_or_question).__name__}")


def build_messages(problem_or_question: Problem | str, template: str = "chat") -> list[dict]:
    """The chat messages of a chat-based template (for APIs that take messages, not text)."""
    spec = get_template(template)
    if not spec.chat:
        raise TemplateError(f"template {template!r} is plain text, not chat messages")
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    messages.append({"role": "user", "content": spec.user_text(_question(problem_or_question))})
    return messages


def render_prompt(
    problem_or_question: Problem | str, tokenizer: Any = None, template: str = "chat"
) -> str:
    """The prompt string for one question, ready to tokenize and continue.

    ``tokenizer`` is any object with ``apply_chat_template`` and a ``chat_template`` (a
    ``transformers`` tokenizer); ``plain`` does not use it and accepts ``None``. A chat-based
    template with a tokenizer that has no chat template raises :class:`TemplateError` pointing
    at ``plain``, rather than letting transformers fall back to some default format.
    """
    spec = get_template(template)
    question = _question(problem_or_question)
    if not spec.chat:
        return spec.user_text(question)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            f"template {template!r} needs a tokenizer with a chat template, and this one has "
            "none (a base model?); use template='plain'"
        )
    messages = build_messages(question, template)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # jinja raise_exception(), e.g. "system role not supported"
        hint = " (try template='chat', which has no system message)" if spec.system else ""
        raise TemplateError(f"the chat template rejected {template!r}: {error}{hint}") from error
    if not isinstance(text, str):
        raise TemplateError(f"apply_chat_template returned {type(text).__name__}, not text")
    return text
