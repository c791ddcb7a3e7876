"""Scoring K rollouts of a prompt with the prompt computed once.

:func:`oreal.models.token_logprobs` lays a right-padded batch out as a
:class:`~oreal.batch.SharedPrefixLayout` (one unpadded stream, each distinct prompt once) and
runs the decoder with :func:`shared_prefix_attention` registered as a transformers
``AttentionInterface``. Calls without a layout (generation, plain forwards) get SDPA unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "SHARED_PREFIX_ATTENTION",
    "shared_prefix_attention",
    "shared_prefix_supported",
    "use_shared_prefix_attention",
]

#: The attention implementation name under which :func:`shared_prefix_attention` is registered.
SHARED_PREFIX_ATTENTION = "oreal_shared_prefix"


def shared_prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a :class:`~oreal.batch.SharedPrefixLayout` stream; plain SDPA without one.

    ``query [1, heads, N, d]`` and ``key``/``value [1, kv_heads, N, d]`` hold the stream. The
    prefixes run causal SDPA as ``[G, heads, P, d]``; each row's suffix attends to its prefix's
    keys and its own (``[B, heads, S, P + S]``, ``layout.suffix_mask``), so the prefix keys of a
    prompt are computed once and read by its K suffixes (their gradients sum over the K).
    On CPU the attention runs in fp32 on the (bf16-rounded) q, k, v: PyTorch's CPU SDPA is
    about twice as fast in fp32 as in bf16 for these shapes (measured), and no less precise.
    """
    layout = kwargs.pop("shared_prefix_layout", None)
    if layout is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    dtype = query.dtype
    compute = torch.float32 if query.device.type == "cpu" else dtype
    groups = query.shape[1] // key.shape[1]
    q, k, v = (x[0].transpose(0, 1).to(compute) for x in (query, key, value))  # [N, h, d]
    if groups > 1 and query.device.type != "cpu":  # masked GPU kernels want equal head counts
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    gqa = k.shape[1] != q.shape[1]

    def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # -> [n, h, L, d]
        # index_select, not x[index]: its backward is an index_add, not a slow index_put
        picked = x.index_select(0, index.flatten())
        return picked.view(*index.shape, *x.shape[1:]).transpose(1, 2)

    def valid(out: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:  # -> [n_valid, h, d]
        return out.transpose(1, 2).flatten(0, 1).index_select(0, slots)

    prefixes = layout.prefixes
    prefix_keys, prefix_values = rows(k, prefixes.index), rows(v, prefixes.index)
    prefix_out = F.scaled_dot_product_attention(
        rows(q, prefixes.index),
        prefix_keys,
        prefix_values,
        is_causal=True,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=gqa,
    )
    parts = [valid(prefix_out, prefixes.slots)]
    for block in layout.suffixes:
        owners = block.row_prefix
        suffix_out = F.scaled_dot_product_attention(
            rows(q, block.index),
            torch.cat([prefix_keys.index_select(0, owners), rows(k, block.index)], dim=2),
            torch.cat([prefix_values.index_select(0, owners), rows(v, block.index)], dim=2),
            attn_mask=block.mask,
            dropout_p=dropout,
            scale=scaling,
            enable_gqa=gqa,
        )
        parts.append(valid(suffix_out, block.slots))
    # The stream is the prefixes, then the suffix buckets in order: the valid outputs, in order.
    return torch.cat(parts).to(dtype)[None], None


def shared_prefix_supported(model: nn.Module) -> bool:
    """Llama/Qwen2-family full attention whose attention goes through SDPA (or ours)."""
    from oreal.rollout.llama_decoder import unsupported_reason

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    implementation = getattr(base.config, "_attn_implementation", None)
    if implementation not in ("sdpa", SHARED_PREFIX_ATTENTION):
        return False
    return unsupported_reason(base) is None


def use_shared_prefix_attention(model: nn.Module) -> None:
    """Route the model's attention through :func:`shared_prefix_attention` (which is SDPA for
    any call without a layout, so generation and other callers see no difference)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    if SHARED_PREFIX_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)
        # Plain calls (padded batches, left-padded generation) get the masks SDPA gets.
        AttentionMaskInterface.register(SHARED_PREFIX_ATTENTION, sdpa_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config._attn_implementation = SHARED_PREFIX_ATTENTION
