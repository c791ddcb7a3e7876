"""Memory-bounded per-token log-probabilities (and entropies) of response tokens.

A naive ``model(ids).logits.log_softmax(-1)`` materialises ``B x T x V`` floats (several times,
counting autograd buffers): for SmolLM2-135M (V = 49152) a 16 x 512 batch is 1.6 GB per copy and
a naive training step peaked at 10.5 GB RSS. Here the decoder produces hidden states, only
response positions are kept, and ``lm_head`` + log-softmax run chunk by chunk over those tokens
under activation checkpointing, so at most one chunk of logits exists at a time, in forward and
in backward.

Layout: results are *compact*: ``logprobs[b, j]`` is the log-probability of the j-th response
token of row b (``j < n_b``, the number of response tokens of that row); the tail is zero. The
matching boolean mask is :func:`compact_response_mask` (also produced by
:func:`oreal.rollout.base.pad_rollouts` as ``loss_mask``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from oreal.batch import shared_prefix_layout
from oreal.models.allocator import tune_allocator
from oreal.models.device import autocast_context
from oreal.models.direct_grads import accumulates_into_grad, embed
from oreal.models.fused_head import FusedHeadLogprobs
from oreal.models.precision import working_weights
from oreal.models.shared_prefix import shared_prefix_supported, use_shared_prefix_attention
from oreal.threads import shared_chooser

if TYPE_CHECKING:
    from oreal.batch import TrainBatch
    from oreal.runtime import Runtime

__all__ = [
    "batch_logprobs",
    "compact_response_mask",
    "naive_token_logprobs",
    "response_positions",
    "token_logprobs",
]


def response_positions(response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of response tokens per row, left-aligned: ``(index [B, R], valid [B, R])``.

    ``R`` is the largest number of response tokens in any row; ``index`` is 0 where invalid.
    The mask need not be contiguous (e.g. multi-turn rollouts with tool output in between).
    """
    mask = response_mask.bool()
    counts = mask.sum(dim=1)
    width = int(counts.max().item()) if mask.numel() else 0
    # A stable sort of "not response" puts response positions first, in their original order.
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]
    return order.masked_fill(~valid, 0), valid


def compact_response_mask(response_mask: torch.Tensor) -> torch.Tensor:
    """The ``[B, R]`` validity mask that goes with :func:`token_logprobs` outputs."""
    return response_positions(response_mask)[1]


def _decoder_and_head(model: PreTrainedModel) -> tuple[nn.Module, nn.Module]:
    """Split a causal LM into the hidden-state producing decoder and the output projection."""
    if hasattr(model, "get_base_model"):  # a peft wrapper: under transformers 4.x its
        model = model.get_base_model()  # get_decoder() is None (the LoRA layers stay in place)
    head = model.get_output_embeddings()
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        decoder = getattr(model, model.base_model_prefix, None)
    if head is None or decoder is None or decoder is model:
        raise TypeError(f"cannot split {type(model).__name__} into decoder and lm_head")
    return decoder, head


def _logit_transform(model: PreTrainedModel, temperature: float) -> tuple[float, float | None]:
    """Scale and soft-cap that the model's own forward applies to logits (Cohere, Gemma 2)."""
    config = model.config
    scale = float(getattr(config, "logit_scale", None) or 1.0) / float(temperature)
    softcap = getattr(config, "final_logit_softcapping", None)
    return scale, (float(softcap) if softcap else None)


def _chunk_stats(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    head: nn.Module,
    scale: float,
    softcap: float | None,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy for one chunk of hidden states (``[N, H]``): the
    generic path, for an output head that is not a plain bias-free ``nn.Linear``."""
    logits = head(hidden).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if scale != 1.0:
        logits = logits * scale
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    if with_entropy:
        probs = torch.exp(logits - lse[:, None])
        entropy = lse - (probs * logits).sum(dim=-1)
    else:
        entropy = logp.new_zeros(())
    return logp, entropy


def _head_logprobs(
    flat_hidden: torch.Tensor,
    flat_targets: torch.Tensor,
    head: nn.Module,
    *,
    scale: float,
    softcap: float | None,
    with_entropy: bool,
    chunk_size: int,
    use_checkpoint: bool,
    reuse_weight: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of ``flat_targets`` from ``[M, H]`` final hidden states.

    A plain bias-free ``nn.Linear`` head without soft-capping takes the fused path
    (:class:`~oreal.models.fused_head.FusedHeadLogprobs`, which recomputes each chunk in
    backward by itself); ``reuse_weight=False`` casts its weight afresh (see
    :func:`~oreal.models.fused_head.low_precision`). Other heads run chunk by chunk through
    autograd, checkpointed when ``use_checkpoint``.
    """
    device_type = flat_hidden.device.type
    if isinstance(head, nn.Linear) and head.bias is None and softcap is None:
        dtype = head.weight.dtype
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
        logp, entropy = FusedHeadLogprobs.apply(
            flat_hidden,
            head.weight,
            flat_targets,
            scale,
            with_entropy,
            chunk_size,
            dtype,
            reuse_weight,
            reuse_weight and accumulates_into_grad(head.weight),
            torch.is_grad_enabled(),
        )
        return logp, (entropy if with_entropy else None)
    logps: list[torch.Tensor] = []
    entropies: list[torch.Tensor] = []
    for start in range(0, flat_hidden.shape[0], chunk_size):
        h = flat_hidden[start : start + chunk_size]
        t = flat_targets[start : start + chunk_size]
        if use_checkpoint:
            lp, ent = checkpoint(
                _chunk_stats, h, t, head, scale, softcap, with_entropy, use_reentrant=False
            )
        else:
            lp, ent = _chunk_stats(h, t, head, scale, softcap, with_entropy)
        logps.append(lp)
        entropies.append(ent)
    empty = flat_hidden.new_zeros(0, dtype=torch.float32)
    logp = torch.cat(logps) if logps else empty
    return logp, ((torch.cat(entropies) if entropies else empty) if with_entropy else None)


def token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    chunk_size: int = 512,
    with_entropy: bool = False,
    temperature: float = 1.0,
    use_checkpoint: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs ``[B, R]`` (fp32) of the response tokens, plus entropies if asked.

    ``response_mask[b, t]`` marks that token ``input_ids[b, t]`` belongs to the response, i.e. its
    log-prob comes from the logits at position ``t - 1`` (so position 0 must not be marked).
    Batches should be right-padded (``pad_rollouts`` does that) so position ids are plain
    ``arange``. ``temperature`` divides the logits, matching a sampler run at that temperature.

    Gradients flow to the model through every chunk. ``use_checkpoint`` (default: whenever
    autograd is recording) recomputes each chunk's logits in backward instead of storing them;
    under ``torch.no_grad`` (reference / old-policy log-probs) there is nothing to store.
    Run it inside :func:`oreal.models.device.autocast_context` for bf16 matmuls; the softmax
    statistics are always computed in fp32.
    """
    from oreal.runtime import through_root

    if input_ids.device.type == "cpu":
        tune_allocator()
    return through_root(
        model,
        _token_logprobs,
        model,
        input_ids,
        attention_mask,
        response_mask,
        chunk_size=chunk_size,
        with_entropy=with_entropy,
        temperature=temperature,
        use_checkpoint=use_checkpoint,
    )


def _embedded(decoder: nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The decoder's token input: ``inputs_embeds`` whose gradient goes straight into the
    embedding's ``.grad`` (:func:`oreal.models.direct_grads.embed`), else ``input_ids``."""
    embeddings = embed(decoder.get_input_embeddings(), input_ids)
    return {"input_ids": input_ids} if embeddings is None else {"inputs_embeds": embeddings}


def _uncached_autocast(device_type: str) -> contextlib.AbstractContextManager[None]:
    """Autocast as it is, but with its weight-cast cache off, for the decoder's forward (a
    no-op without autocast).

    Autocast caches the bf16 cast of every trainable weight until its outermost context
    exits, i.e. past the whole forward: 212 MB for SmolLM2's layers. The decoder's forward
    casts each weight once anyway, so the cache saves nothing there; without it the casts of
    a checkpointed layer die with the layer, as its activations do (the backward recomputes
    them; without checkpointing the backward keeps each cast weight either way). The
    numbers are the same: the same casts, made as often. The head keeps the cache (the
    generic chunked path uses its weight once per chunk).
    """
    if not torch.is_autocast_enabled(device_type) or not torch.is_autocast_cache_enabled():
        return contextlib.nullcontext()
    dtype = torch.get_autocast_dtype(device_type)
    return torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=False)


def _token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    chunk_size: int,
    with_entropy: bool,
    temperature: float,
    use_checkpoint: bool | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from torch.distributed.fsdp import FSDPModule

    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    mask = response_mask.bool()
    if mask.shape != input_ids.shape:
        raise ValueError(f"response_mask {tuple(mask.shape)} != input_ids {tuple(input_ids.shape)}")
    if mask[:, 0].any():
        raise ValueError("response_mask marks position 0, which no logits predict")
    decoder, head = _decoder_and_head(model)
    scale, softcap = _logit_transform(model, temperature)

    layout = None
    if shared_prefix_supported(model):
        layout = shared_prefix_layout(input_ids, attention_mask, mask)
    if layout is not None:
        # One unpadded stream, each prompt once (SharedPrefixLayout); attention is chosen by the
        # layout travelling with the call, also when a checkpointed layer is recomputed.
        use_shared_prefix_attention(model)
        with _uncached_autocast(input_ids.device.type):
            hidden = decoder(
                **_embedded(decoder, layout.input_ids),
                position_ids=layout.position_ids,
                # A 4-D mask is passed through as is: no mask is built (the layout is the mask).
                attention_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool, device=input_ids.device),
                use_cache=False,
                shared_prefix_layout=layout,
            )
        hidden = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]
        flat_hidden = hidden[0, layout.score_positions]
        flat_targets, valid = layout.score_targets, layout.compact_valid
    else:
        index, valid = response_positions(mask)
        with _uncached_autocast(input_ids.device.type):
            hidden = decoder(
                **_embedded(decoder, input_ids), attention_mask=attention_mask, use_cache=False
            )
        hidden = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]
        size = hidden.shape[-1]
        # Only hidden states that predict a response token are kept: position t - 1 predicts t.
        gathered = hidden.gather(1, (index - 1).clamp(min=0)[..., None].expand(-1, -1, size))
        flat_hidden = gathered[valid]
        flat_targets = input_ids.gather(1, index)[valid]

    logp, entropy = _head_logprobs(
        flat_hidden,
        flat_targets,
        head,
        scale=scale,
        softcap=softcap,
        with_entropy=with_entropy,
        chunk_size=chunk_size,
        use_checkpoint=torch.is_grad_enabled() if use_checkpoint is None else use_checkpoint,
        # FSDP2 all-gathers the head into a reused buffer without bumping its version.
        reuse_weight=not isinstance(model, FSDPModule),
    )

    def scatter(flat: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(valid.shape, dtype=torch.float32, device=flat_hidden.device)
        return out.masked_scatter(valid, flat.float())

    return scatter(logp), (scatter(entropy) if entropy is not None else None)


def naive_token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    with_entropy: bool = False,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference implementation with a full-vocabulary log-softmax; same layout as
    :func:`token_logprobs`. Memory-hungry: for tests and debugging only."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits.float() / temperature
    logp_all = torch.log_softmax(logits[:, :-1], dim=-1)
    token_logp = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    index, valid = response_positions(response_mask.bool())
    prev = (index - 1).clamp(min=0)
    logp = token_logp.gather(1, prev).masked_fill(~valid, 0.0)
    if not with_entropy:
        return logp, None
    entropy_all = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy_all.gather(1, prev).masked_fill(~valid, 0.0)


@torch.no_grad()
def batch_logprobs(
    model: nn.Module,
    batch: TrainBatch,
    *,
    micro_batch_size: int,
    autocast: bool,
    param_dtype: torch.dtype = torch.float32,
    temperature: float = 1.0,
    runtime: Runtime | None = None,
) -> torch.Tensor:
    """Log-probs ``[B, R]`` of the response tokens under ``model`` (no gradient), micro-batched.

    ``param_dtype=torch.bfloat16`` scores with bf16 copies of the weights, as
    :func:`oreal.train.update.policy_update` trains with them (:mod:`oreal.models.precision`).

    With a data-parallel ``runtime`` every rank runs the same number of forwards (a placeholder
    row where it has none left), since forwards of a sharded model are collectives.
    """
    device = batch.input_ids.device
    out = torch.zeros(batch.loss_mask.shape, dtype=torch.float32, device=device)
    slices = (
        runtime.lockstep(len(batch), micro_batch_size)
        if runtime is not None
        else [slice(s, s + micro_batch_size) for s in range(0, len(batch), micro_batch_size)]
    )
    # Thread count per micro-batch chosen by timing (oreal/threads.py); values do not change.
    threads = shared_chooser("batch_logprobs", trial_rounds=1, period=32)
    threads.begin(trial=False)
    autocast = autocast and param_dtype == torch.float32  # bf16 weights: nothing to cast
    try:
        with working_weights(model, param_dtype), autocast_context(device, autocast):
            for rows in slices:
                part = batch[rows] if rows is not None else batch.placeholder()
                logprobs, _ = threads.run(
                    token_logprobs,
                    *(model, part.input_ids, part.attention_mask, part.response_mask),
                    temperature=temperature,
                    work=float(part.attention_mask.sum()),
                )
                if rows is not None:
                    out[rows, : logprobs.shape[1]] = logprobs.float()
    finally:
        threads.restore()
    return out
