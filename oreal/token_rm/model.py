"""OREAL's token-level reward model: a causal-LM backbone with a scalar head, and its update.

Architecture (Lyu et al., OREAL, arXiv 2502.06781, §2.4 and Algorithm 1): the decoder of a
causal LM (by default a full copy of the initial policy) followed by a bias-free linear head
``hidden_size -> 1``, giving one logit h_t per response token. The head starts at exactly zero
("to ensure unbiased importance sampling weight at the start of training"), so every h_t is 0,
every weight w± is 0, and on the first update only the head receives a gradient:
∂L/∂hidden = (∂L/∂h)·W_head = 0 (derived; tests/test_token_rm_model.py checks it). The release
is zero too, in effect: its head is built on the meta device and xtuner 0.2.0rc0's lazy
initialisation zero-fills it because the checkpoint's ``lm_head.weight`` [V, H] does not match
its shape [1, H] (xtuner ``_lite/patches/base.py`` 208-256, zero_ at 242).

Backbones:

- ``copy`` (default, the paper and release): a trainable deep copy of the policy's decoder, or
  of the decoder of another checkpoint with the same vocabulary (``name_or_path``).
- ``lora``: LoRA adapters (``peft``) on a *frozen* backbone, borrowed from the frozen reference
  policy when there is one (:class:`oreal.models.reference.FrozenReference`, which then logits
  π_ref with these adapters switched off): a second set of full weights and their AdamW state
  are not needed.

Score position: ``previous`` (default, the release: ``train_oreal.py`` 763-773 reads the RM
logits with the same shifted ``[-T - 1 : -1]`` window as the policy log-probs) reads h_t from
the hidden state at t - 1, the one that predicts token t: token t is weighted by how the prefix
*before* it looks. ``token`` reads it *at* token t, a function of s_≤t including the token
itself, the paper's w(s_≤t) (§2.4). The two differ by a shift of one token.

The hidden states are computed under the caller's autocast (bf16 like the policy); the head
runs in fp32 so that small head weights (it starts at zero) are not rounded away.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from oreal.batch import TrainBatch
from oreal.models.device import autocast_context
from oreal.models.loading import enable_gradient_checkpointing, load_policy
from oreal.models.logprobs import _decoder_and_head, response_positions
from oreal.models.lora import LoraSettings, apply_lora, require_peft
from oreal.models.reference import FrozenReference
from oreal.runtime import Runtime, full_value
from oreal.threads import shared_chooser
from oreal.token_rm.weights import token_rm_loss

ScorePosition = Literal["token", "previous"]
SCORE_POSITIONS: tuple[str, ...] = ("token", "previous")

__all__ = [
    "SCORE_POSITIONS",
    "ScorePosition",
    "TokenRewardModel",
    "build_token_rm",
    "token_rm_update",
]


class TokenRewardModel(nn.Module):
    """h = W·decoder(x) per response token: ``[B, R]`` logits in the compact response layout."""

    def __init__(self, backbone: nn.Module, hidden_size: int, *, lora: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1, bias=False)
        nn.init.zeros_(self.head.weight)  # the paper's, and the release's in effect
        self.lora = lora

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        response_mask: Tensor,
        *,
        score_position: ScorePosition = "previous",
    ) -> Tensor:
        """Token logits ``[B, R]`` (fp32, 0 at padding) of the response tokens marked in
        ``response_mask [B, T]`` (right-padded batches, as ``pad_rollouts`` makes them)."""
        if score_position not in SCORE_POSITIONS:
            raise ValueError(f"unknown score_position {score_position!r}; use {SCORE_POSITIONS}")
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        index, valid = response_positions(response_mask.bool())
        if score_position == "previous":
            index = (index - 1).clamp(min=0)
        gathered = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            logits = self.head(gathered.float()).squeeze(-1)
        return logits.masked_fill(~valid, 0.0)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The trained tensors only: everything for ``copy``, adapters + head for ``lora``
        (the frozen shared backbone is the initial policy, rebuilt at resume)."""
        return {
            name: param.detach().clone()
            for name, param in self.named_parameters()
            if param.requires_grad
        }

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        expected = {name for name, param in self.named_parameters() if param.requires_grad}
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            raise KeyError(f"token RM state: missing {missing[:5]}, unexpected {unexpected[:5]}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """The backbone without this RM's LoRA adapters (a no-op for ``copy``): how a borrowed
        reference backbone is scored as π_ref."""
        if not self.lora:
            yield
            return
        with self.backbone.disable_adapter():
            yield


def _hidden_size(model: PreTrainedModel) -> int:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


def build_token_rm(
    policy: PreTrainedModel,
    *,
    backbone: Literal["copy", "lora"] = "copy",
    name_or_path: str | None = None,
    reference: FrozenReference | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    lora: LoraSettings | None = None,
    device: torch.device | str | None = None,
    cache_dir: str | None = None,
    gradient_checkpointing: bool = False,
) -> TokenRewardModel:
    """The token RM of a run, with its head at zero.

    - ``backbone="copy"``: the decoder of a deep copy of ``policy`` (taken before any update:
      pass the *initial* policy), or of the model at ``name_or_path``.
    - ``backbone="lora"``: LoRA adapters on the frozen decoder borrowed from ``reference`` (a
      frozen copy of the initial policy; the reference then logits π_ref with the adapters
      off), else on a frozen copy of ``policy`` or of the model at ``name_or_path``.

    A backbone from ``name_or_path`` must share the policy's vocabulary (it reads the policy's
    token ids): pass the policy ``tokenizer`` to have that checked.
    """
    if backbone not in ("copy", "lora"):
        raise ValueError(f"unknown token RM backbone {backbone!r}; expected 'copy' or 'lora'")
    if backbone == "lora":
        require_peft("token_rm.backbone='lora'")  # fail before copying or loading any weights
    borrowed = backbone == "lora" and reference is not None and not reference.shared_with_policy
    if name_or_path is not None:
        source, rm_tokenizer = load_policy(name_or_path, device=device, cache_dir=cache_dir)
        if tokenizer is not None and rm_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"token_rm.name_or_path={name_or_path!r} has another vocabulary than the policy; "
                "the token RM reads the policy's token ids, so it needs the same tokenizer"
            )
        borrowed = False
    elif borrowed:
        assert reference is not None
        source = reference.module
    else:
        source = copy.deepcopy(policy)
    if gradient_checkpointing and backbone == "copy":
        enable_gradient_checkpointing(source)
    decoder, _ = _decoder_and_head(source)
    hidden_size = _hidden_size(source)
    if backbone == "lora":
        decoder = apply_lora(decoder, lora or LoraSettings(), task_type=None)
    else:
        for param in decoder.parameters():
            param.requires_grad_(True)
    model = TokenRewardModel(decoder, hidden_size, lora=backbone == "lora")
    if borrowed:
        assert reference is not None
        reference.add_scope(model.adapters_disabled)
    if device is not None:
        model.head.to(device)
        model.backbone.to(device)
    return model


def token_rm_update(
    model: TokenRewardModel,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    labels: Tensor,
    *,
    micro_batch_size: int,
    autocast: bool = True,
    grad_clip: float | None = 1.0,
    score_position: ScorePosition = "previous",
    runtime: Runtime | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """One RM optimizer step on the step's kept sequences; returns the *pre-update* logits.

    The sequences are walked in micro-batches; each forward (with grad) gives the logits h of
    the RM as it was before this step, which are kept (detached, ``[B, R]`` aligned with
    ``batch.loss_mask``) for the policy's token weights, and the loss share
    :func:`oreal.token_rm.weights.token_rm_loss` over the global count S, whose gradients add up
    to the full-batch gradient whatever the micro-batch size. S counts the kept sequences of
    *all* ranks (ranks may keep different numbers): ``runtime`` all-reduces it and keeps the
    ranks' sharded forwards in lockstep. One forward serves both, as in the release (OREAL
    Algorithm 1 lines 10-12), so the weights of step n come from the RM after n - 1 updates.
    Then the gradient norm is clipped (over all ranks' gradients) and AdamW steps once.

    Returns ``(logits, {"rm_loss": L_RM before the update, "rm_grad_norm": ...})``; the loss is
    the global value when ``runtime`` is given, this rank's share otherwise.
    """
    if micro_batch_size < 1:
        raise ValueError("micro_batch_size must be >= 1")
    runtime = runtime or Runtime()
    device = batch.input_ids.device
    total_seqs = int(runtime.all_reduce(torch.tensor([len(batch)]))[0])
    logits = torch.zeros(batch.loss_mask.shape, dtype=torch.float32, device=device)
    labels = labels.to(device)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), dtype=torch.float64)

    def forward_backward(rows: Tensor | None) -> None:
        nonlocal total
        part = batch[rows] if rows is not None else batch.placeholder()
        with autocast_context(device, autocast):
            part_logits = model(
                part.input_ids,
                part.attention_mask,
                part.response_mask,
                score_position=score_position,
            )
        if rows is None:
            loss = part_logits.sum() * 0.0  # joins the collectives, adds nothing
        else:
            loss = token_rm_loss(
                part_logits,
                part.loss_mask,
                labels[rows],
                max(total_seqs, 1),
                dp_world_size=runtime.world_size,
            )
            logits[rows, : part_logits.shape[1]] = part_logits.detach()
            total += float(loss.detach()) / runtime.world_size
        loss.backward()

    # Thread count per micro-batch chosen by timing (oreal/threads.py); values do not change.
    threads = shared_chooser("token_rm_update", trial_rounds=1, period=32)
    threads.begin(trial=False)
    try:
        for rows in runtime.lockstep(len(batch), micro_batch_size):
            work = 1.0 if rows is None else float(batch.attention_mask[rows].sum())
            threads.run(forward_backward, rows, work=work)
    finally:
        threads.restore()
    clip = grad_clip if grad_clip is not None else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    rm_loss = float(runtime.all_reduce(total)) if runtime.distributed else float(total)
    return logits, {"rm_loss": rm_loss, "rm_grad_norm": full_value(grad_norm)}
