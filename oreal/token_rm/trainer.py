"""The token-level reward model's part of a training step, kept out of the loop's story.

Per step (oreal.md §5, steps 7 and 9; InternLM/OREAL ``train_oreal.py`` at 2859cc0):

1. one RM forward over the kept sequences gives the logits h of the RM *before* this step's
   update; from them, without gradient, q_t and the policy's token weights (w+ on correct,
   w- on wrong rows) and the step's RM metrics (loss, accuracy, ROC-AUC: measured before the
   update, so they are honest held-out numbers for the RM of the previous step);
2. the same forward's sequence-level BCE is back-propagated and the RM's AdamW steps once;
3. the RM's cosine schedule advances (every step, like the policy's).

The first ``policy_freeze_steps`` steps train only the RM (:meth:`TokenRMTrainer.policy_frozen`).
The policy's LR schedule *does* count those steps, as the release does (its warm-up and cosine
schedulers step every iteration; ``update_actor`` only gates the optimizer step): with the
paper's 10 frozen steps and 10 warm-up steps the policy's first update runs at its peak LR.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from oreal.batch import TrainTensors
from oreal.token_rm.model import LoraSettings, build_token_rm, token_rm_update
from oreal.token_rm.weights import oreal_token_weights, roc_auc, sequence_logits
from oreal.train.checkpoint import load_extra_state
from oreal.train.config import OrealConfig, TokenRMConfig
from oreal.train.update import advance_schedule, make_optimizer

__all__ = ["TokenRMOutput", "TokenRMTrainer"]


@dataclass
class TokenRMOutput:
    """The RM's view of one step's kept rows (``[B, R]``, detached, pre-update)."""

    scores: Tensor
    q: Tensor
    weights: Tensor
    metrics: dict[str, float]

    def sample_fields(self, row: int, length: int) -> dict[str, list[float]]:
        """``token_weights`` and ``token_q`` of one row for ``samples.jsonl`` (oreal inspect)."""
        return {
            "token_weights": [round(w, 4) for w in self.weights[row, :length].tolist()],
            "token_q": [round(q, 4) for q in self.q[row, :length].tolist()],
        }


class TokenRMTrainer:
    """The token RM, its AdamW and cosine schedule, and what a checkpoint must hold of them."""

    def __init__(
        self,
        config: TokenRMConfig,
        policy: PreTrainedModel,
        *,
        reference: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
        autocast: bool,
        micro_batch_size: int,
        total_steps: int,
        cache_dir: str | None = None,
        gradient_checkpointing: bool = False,
    ):
        self.config = config
        self.device = device
        self.autocast = autocast
        self.micro_batch_size = config.micro_batch_size or micro_batch_size
        self.model = build_token_rm(
            policy,
            backbone=config.backbone,
            name_or_path=config.name_or_path,
            # A LoRA RM shares the frozen reference's weights (the initial policy) if any.
            shared_backbone=reference,
            tokenizer=tokenizer,
            lora=LoraSettings(
                rank=config.lora_rank,
                alpha=config.lora_alpha,
                dropout=config.lora_dropout,
                target_modules=config.lora_target_modules,
            ),
            device=device,
            cache_dir=cache_dir,
            gradient_checkpointing=gradient_checkpointing,
        )
        self.optimizer, self.scheduler = make_optimizer(
            self.model.trainable_parameters(), config, total_steps
        )

    @classmethod
    def from_config(
        cls,
        config: OrealConfig,
        policy: PreTrainedModel,
        reference: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
    ) -> TokenRMTrainer:
        """The run's RM, built from the *initial* policy (call before loading a checkpoint)."""
        return cls(
            config.token_rm,
            policy,
            reference=reference,
            tokenizer=tokenizer,
            device=device,
            autocast=config.model.bf16_autocast,
            micro_batch_size=config.train.micro_batch_size,
            total_steps=config.train.steps,
            cache_dir=config.model.cache_dir,
            gradient_checkpointing=config.model.gradient_checkpointing,
        )

    def policy_frozen(self, step: int) -> bool:
        """True during the warm-up steps 0 .. policy_freeze_steps - 1 (oreal.md §4.4)."""
        return step < self.config.policy_freeze_steps

    def update(self, tensors: TrainTensors, positive: Tensor) -> TokenRMOutput:
        """Weights from the RM as it is, then one RM update on these rows (module docstring)."""
        positive = positive.bool().to(tensors.input_ids.device)
        lr = self.scheduler.get_last_lr()[0]
        scores, parts = token_rm_update(
            self.model,
            self.optimizer,
            tensors,
            positive.float(),
            micro_batch_size=self.micro_batch_size,
            autocast=self.autocast,
            grad_clip=self.config.grad_clip,
            score_position=self.config.score_position,
        )
        mask = tensors.loss_mask.bool()
        weights = oreal_token_weights(
            scores,
            mask,
            positive,
            source=self.config.weight_source,
            topk_ratio=self.config.topk_rescale,
        )
        metrics = {**parts, **_rm_metrics(scores, mask, positive, weights.weights), "rm_lr": lr}
        return TokenRMOutput(scores=scores, q=weights.q, weights=weights.weights, metrics=metrics)

    def advance_schedule(self) -> None:
        advance_schedule(self.scheduler)  # every step, like the policy's

    @contextlib.contextmanager
    def reference_scope(self) -> Iterator[None]:
        """Wrap scoring of the frozen reference: a LoRA RM shares (and patches) its layers."""
        with self.model.adapters_disabled():
            yield

    # ------------------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def restore(self, checkpoint: Path, extra: dict[str, Any]) -> None:
        """Load the RM tensors and optimizer/scheduler state that ``Trainer.save`` wrote."""
        if "token_rm" not in extra:
            raise ValueError(f"{checkpoint} has no token RM state (the run had token_rm off)")
        self.model.load_trainable_state_dict(load_extra_state(checkpoint, "token_rm"))
        self.load_state_dict(extra["token_rm"])


def _rm_metrics(
    scores: Tensor, mask: Tensor, positive: Tensor, weights: Tensor
) -> dict[str, float]:
    """Accuracy / ROC-AUC of σ(h̄) against the outcome, and the weights' statistics."""
    logits = sequence_logits(scores, mask)
    labels = positive.float()
    metrics: dict[str, float] = {
        "rm_accuracy": float(((logits > 0).float() == labels).float().mean()),
        "rm_nonzero_frac": float((weights[mask] > 0).float().mean()),
    }
    auc = roc_auc(logits, labels)
    if auc is not None:  # one class only (possible without 1+1 filtering): not defined
        metrics["rm_auc"] = auc
    for name, rows in (("rm_weight_pos_mean", positive), ("rm_weight_neg_mean", ~positive)):
        selected = mask & rows[:, None]
        if selected.any():
            metrics[name] = float(weights[selected].mean())
    return metrics
