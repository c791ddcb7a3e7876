"""Reward models loaded from a local directory: a Qwen2.5-Math-PRM-format PRM and an outcome RM.

**Process RM, Qwen2.5-Math-PRM format** (HF model card; reward_hub ``hf/reward.py``;
algorithms.md §5.1). Three chat messages, rendered with the PRM's chat template without a
generation prompt:

    system     "Please reason step by step, and put your final answer within \\boxed{}."
    user       the question
    assistant  the steps joined by "<extra_0>", with one more "<extra_0>" at the end

The model emits 2-class logits at every position; step k's score is softmax(logits)[1] at the
k-th ``<extra_0>``. Inputs longer than 8,192 tokens are cut from the left (reward_hub); a step
whose tag was cut away gets the score of the first tag that survived.

The released checkpoint names the architecture ``Qwen2ForProcessRewardModel`` and ships it as
remote code. :class:`Qwen2ForProcessRewardModel` below is that architecture (a ``Qwen2Model`` and
the head Linear(h, h), ReLU, Linear(h, 2), with the same parameter names), so the weights load
with ``trust_remote_code=False``. Any ``*ForTokenClassification`` checkpoint with 2 labels and an
``<extra_0>`` token loads through ``AutoModelForTokenClassification`` instead.

**Outcome RM**: any ``*ForSequenceClassification`` checkpoint; the conversation (user: question,
assistant: response) goes through its chat template, and the score is σ(logit) with one label,
softmax(logits)[1] with two, read at the last token. It judges whole texts, so a partial solution
is scored as if it ended there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2Model,
    Qwen2PreTrainedModel,
)

from oreal.data.templates import COT_INSTRUCTION
from oreal.search.scorers.base import ScoreRequest

__all__ = [
    "PRM_MAX_TOKENS",
    "STEP_TAG",
    "OutcomeRMScorer",
    "ProcessRMScorer",
    "Qwen2ForProcessRewardModel",
    "model_architectures",
    "save_tiny_prm",
]

STEP_TAG = "<extra_0>"
PRM_MAX_TOKENS = 8192
PRM_SYSTEM_PROMPT = COT_INSTRUCTION  # the exact string Qwen's card and reward_hub use


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    """Qwen2.5-Math-PRM's architecture: Qwen2 decoder + 2-layer token head -> 2 logits."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(),
            nn.Linear(config.hidden_size, self.num_labels),
        )
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Logits ``[B, T, 2]``."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return self.score(hidden.last_hidden_state)


def model_architectures(path: str | Path) -> list[str]:
    """The ``architectures`` of a local checkpoint's config.json (empty when not readable)."""
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    value = data.get("architectures") or []
    return [str(a) for a in value] if isinstance(value, list) else []


def _dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class _LocalRM:
    """Loading and right-padded batching shared by the two reward-model scorers."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else tokenizer.eos_token_id or 0)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, conversations: list[list[dict[str, str]]]) -> list[list[int]]:
        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=False)
            for c in conversations
        ]
        encoded = self.tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=PRM_MAX_TOKENS
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def _batches(self, rows: list[list[int]]) -> Any:
        """Yield ``(indices, input_ids, attention_mask)`` right-padded, longest first."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo : lo + self.batch_size]
            width = max(len(rows[i]) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                ids[r, : len(rows[i])] = torch.tensor(rows[i], dtype=torch.long)
                mask[r, : len(rows[i])] = 1
            yield chunk, ids.to(self.device), mask.to(self.device)


class ProcessRMScorer(_LocalRM):
    """A Qwen2.5-Math-PRM-format process reward model (module docstring)."""

    name = "prm"
    per_step = True

    def __init__(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, *, batch_size: int = 8
    ) -> None:
        super().__init__(model, tokenizer, batch_size)
        tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
        if tag is None or tag == tokenizer.unk_token_id:
            raise ValueError(f"the PRM tokenizer has no {STEP_TAG} token")
        self.step_tag_id = int(tag)

    @classmethod
    def from_path(
        cls, path: str | Path, *, device: str | torch.device | None = None, batch_size: int = 8
    ) -> ProcessRMScorer:
        from oreal.models.device import pick_device

        target = pick_device(device)
        if "Qwen2ForProcessRewardModel" in model_architectures(path):
            model: nn.Module = Qwen2ForProcessRewardModel.from_pretrained(
                str(path), dtype=_dtype(target)
            )
        else:
            model = AutoModelForTokenClassification.from_pretrained(
                str(path), dtype=_dtype(target), trust_remote_code=False
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        return cls(model.to(target), tokenizer, batch_size=batch_size)

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        conversations = [
            [
                {"role": "system", "content": PRM_SYSTEM_PROMPT},
                {"role": "user", "content": r.question(self.name)},
                {"role": "assistant", "content": STEP_TAG.join(r.steps) + STEP_TAG},
            ]
            for r in requests
        ]
        rows = self._encode(conversations)
        results: list[list[float]] = [[] for _ in requests]
        for chunk, ids, mask in self._batches(rows):
            with torch.no_grad():
                out = self.model(input_ids=ids, attention_mask=mask)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            positive = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
            tags = (ids == self.step_tag_id).cpu()
            for r, i in enumerate(chunk):
                scores = positive[r][tags[r]].tolist()
                wanted = len(requests[i].steps)
                if not scores:
                    raise ValueError(f"no {STEP_TAG} survived truncation to {PRM_MAX_TOKENS}")
                results[i] = [scores[0]] * (wanted - len(scores)) + scores[-wanted:]
        return results


class OutcomeRMScorer(_LocalRM):
    """A sequence-classification outcome reward model (module docstring)."""

    name = "orm"
    per_step = False

    @classmethod
    def from_path(
        cls, path: str | Path, *, device: str | torch.device | None = None, batch_size: int = 8
    ) -> OutcomeRMScorer:
        from oreal.models.device import pick_device

        target = pick_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), dtype=_dtype(target), trust_remote_code=False
        )
        return cls(model.to(target), AutoTokenizer.from_pretrained(str(path)), batch_size)

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        conversations = [
            [
                {"role": "user", "content": r.question(self.name)},
                {"role": "assistant", "content": r.separator.join(r.steps)},
            ]
            for r in requests
        ]
        rows = self._encode(conversations)
        results: list[list[float]] = [[] for _ in requests]
        for chunk, ids, mask in self._batches(rows):
            with torch.no_grad():
                logits = self._last_token_logits(ids, mask).float().cpu()
            if logits.shape[-1] == 1:
                probs = torch.sigmoid(logits[:, 0])
            else:
                probs = torch.softmax(logits, dim=-1)[:, 1]
            for r, i in enumerate(chunk):
                results[i] = [float(probs[r])]
        return results

    def _last_token_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Head logits at each row's last real token, whatever the pad token is."""
        base = getattr(self.model, self.model.base_model_prefix, None)
        head = getattr(self.model, "score", None)
        last = mask.sum(dim=1) - 1
        if base is not None and head is not None:
            hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
            picked = hidden[torch.arange(len(ids), device=ids.device), last]
            return head(picked)
        rows = [self.model(input_ids=ids[r : r + 1, : int(last[r]) + 1]) for r in range(len(ids))]
        return torch.cat([row.logits for row in rows])


def save_tiny_prm(path: str | Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """A tiny random PRM in the Qwen2.5-Math-PRM format (architecture, ``<extra_0>``, ChatML).

    For tests and smoke runs: no hub access is needed to exercise the real loading code.
    """
    from oreal.models.tiny import build_tiny_tokenizer

    path = Path(path)
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TAG]})
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["Qwen2ForProcessRewardModel"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForProcessRewardModel(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
