"""The token-level reward model's part of a training step, kept out of the step's story.

Per step (OREAL, arXiv 2502.06781, Algorithm 1 lines 10-12; InternLM/OREAL ``train_oreal.py``
@2859cc0, its steps 7 and 9):

1. one RM forward over the kept sequences gives the logits h of the RM *before* this step's
   update; from them, without gradient, q_t and the policy's token weights (w+ on correct,
   w- on wrong rows) and the step's RM metrics (loss, accuracy, ROC-AUC: measured before the
   update, so they are honest held-out numbers for the RM of the previous step);
2. the same forward's sequence-level BCE is back-propagated and the RM's AdamW steps once;
3. the RM's schedule advances (every step, like the policy's): lr·(s+1)/W during the warm-up,
   then cosine (:mod:`oreal.optim`).

The first ``policy_freeze_steps`` steps train only the RM (:meth:`TokenRMTrainer.policy_frozen`).
The policy's LR schedule *does* count those steps, as the release does (its warm-up and cosine
schedulers step every iteration; ``update_actor`` only gates the optimizer step): with the
paper's 10 frozen steps and 10 warm-up steps the policy's first update runs at its peak LR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from oreal.batch import TrainBatch
from oreal.models.lora import LoraSettings
from oreal.optim import advance_schedule, make_optimizer, restore_schedule
from oreal.runtime import Runtime
from oreal.token_rm.model import TokenRewardModel, build_token_rm, token_rm_update
from oreal.token_rm.weights import oreal_token_weights, roc_auc, sequence_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from oreal.models.reference import FrozenReference
    from oreal.train.config import TokenRMConfig

__all__ = ["TokenRMOutput", "TokenRMTrainer"]


@dataclass
class TokenRMOutput:
    """The RM's view of one step's kept rows (``[B, R]``, detached, pre-update)."""

    logits: Tensor
    q: Tensor
    weights: Tensor
    metrics: dict[str, float]


class TokenRMTrainer:
    """The token RM, its AdamW and schedule, and what a checkpoint must hold of them."""

    def __init__(
        self,
        config: TokenRMConfig,
        policy: PreTrainedModel,
        *,
        reference: FrozenReference | None,
        tokenizer: PreTrainedTokenizerBase,
        runtime: Runtime,
        autocast: bool,
        micro_batch_size: int,
        total_steps: int,
        cache_dir: str | None = None,
        gradient_checkpointing: bool = False,
    ):
        self.config = config
        self.runtime = runtime
        self.autocast = autocast
        self.micro_batch_size = config.micro_batch_size or micro_batch_size
        model = build_token_rm(
            policy,
            backbone=config.backbone,
            name_or_path=config.name_or_path,
            reference=reference,
            tokenizer=tokenizer,
            lora=LoraSettings(
                rank=config.lora_rank,
                alpha=config.lora_alpha,
                dropout=config.lora_dropout,
                target_modules=config.lora_target_modules,
            ),
            device=runtime.device,
            cache_dir=cache_dir,
            gradient_checkpointing=gradient_checkpointing,
        )
        self.trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
        layers = getattr(model.backbone, "layers", None) or []
        self.model: TokenRewardModel = runtime.shard(model, list(layers))
        self.optimizer, self.scheduler = make_optimizer(
            self.model.trainable_parameters(), config, total_steps
        )

    def policy_frozen(self, step: int) -> bool:
        """True during the warm-up steps 0 .. policy_freeze_steps - 1 (OREAL release)."""
        return step < self.config.policy_freeze_steps

    def step(self, batch: TrainBatch) -> TokenRMOutput:
        """Weights from the RM as it is, then one RM update on these rows (module docstring).

        ``batch`` is this rank's kept rows; ``batch.positive`` are the RM's labels.
        """
        positive = batch.positive.bool()
        lr = self.scheduler.get_last_lr()[0]
        logits, parts = token_rm_update(
            self.model,
            self.optimizer,
            batch,
            positive.float(),
            micro_batch_size=self.micro_batch_size,
            autocast=self.autocast,
            grad_clip=self.config.grad_clip,
            score_position=self.config.score_position,
            runtime=self.runtime,
        )
        mask = batch.loss_mask.bool()
        weights = oreal_token_weights(
            logits,
            mask,
            positive,
            source=self.config.weight_source,
            topk_ratio=self.config.topk_rescale,
        )
        metrics = {**parts, **self._metrics(logits, mask, positive, weights.weights), "rm_lr": lr}
        return TokenRMOutput(logits=logits, q=weights.q, weights=weights.weights, metrics=metrics)

    def advance_schedule(self) -> None:
        advance_schedule(self.scheduler)  # every step, like the policy's

    def _metrics(
        self, logits: Tensor, mask: Tensor, positive: Tensor, weights: Tensor
    ) -> dict[str, float]:
        """Accuracy / ROC-AUC of σ(h̄) against the outcome, and the weights' statistics, over
        the kept rows of every rank."""
        sequence = sequence_logits(logits, mask).cpu()
        selected_pos = weights[mask & positive[:, None]].cpu()
        selected_neg = weights[mask & ~positive[:, None]].cpu()
        local = (sequence, positive.cpu(), selected_pos, selected_neg, weights[mask].cpu())
        parts = self.runtime.all_gather_object(local)
        sequence = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        if not len(sequence):
            return {}
        w_pos = torch.cat([p[2] for p in parts])
        w_neg = torch.cat([p[3] for p in parts])
        w_all = torch.cat([p[4] for p in parts])
        metrics = {
            "rm_accuracy": float(((sequence > 0) == labels).float().mean()),
            "rm_nonzero_frac": float((w_all > 0).float().mean()) if len(w_all) else 0.0,
        }
        auc = roc_auc(sequence, labels.float())
        if auc is not None:  # one class only (possible without 1+1 filtering): not defined
            metrics["rm_auc"] = auc
        if len(w_pos):
            metrics["rm_weight_pos_mean"] = float(w_pos.mean())
        if len(w_neg):
            metrics["rm_weight_neg_mean"] = float(w_neg.mean())
        return metrics

    # ------------------------------------------------------------------------- checkpointing
    def trained_state(self) -> dict[str, Tensor]:
        """The trained tensors (everything for ``copy``, adapters + head for ``lora``), full
        and on the main rank. A collective."""
        full = self.runtime.full_state_dict(self.model)
        return {k: v for k, v in full.items() if k in self.trainable_names}

    def optimizer_state(self) -> dict[str, Any]:
        return self.runtime.full_optimizer_state(self.model, self.optimizer)

    def load(
        self, trained: dict[str, Tensor], optimizer: dict[str, Any], scheduler: dict[str, Any]
    ) -> None:
        """Restore what :meth:`trained_state`, :meth:`optimizer_state` and the scheduler's
        ``state_dict`` saved (read on every rank)."""
        expected = self.trainable_names
        if set(trained) != expected:
            missing, unexpected = sorted(expected - set(trained)), sorted(set(trained) - expected)
            raise ValueError(f"token RM state: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.runtime.load_model_state(self.model, trained)
        self.runtime.load_optimizer_state(self.model, self.optimizer, optimizer)
        restore_schedule(self.scheduler, scheduler)
