"""Policy loading, mixed-precision helpers, chunked token log-probs and tiny test models."""

from oreal.models.device import autocast_context, pick_device
from oreal.models.loading import (
    EMBEDDED_ALIASES,
    EMBEDDED_MODEL_NAME,
    default_cache_dir,
    embedded_gguf_path,
    enable_gradient_checkpointing,
    load_gguf,
    load_policy,
    load_tokenizer,
    prepare_tokenizer,
)
from oreal.models.logprobs import (
    compact_response_mask,
    naive_token_logprobs,
    response_positions,
    token_logprobs,
)
from oreal.models.tiny import build_tiny_model, build_tiny_tokenizer, save_tiny

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_MODEL_NAME",
    "autocast_context",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "compact_response_mask",
    "default_cache_dir",
    "embedded_gguf_path",
    "enable_gradient_checkpointing",
    "load_gguf",
    "load_policy",
    "load_tokenizer",
    "naive_token_logprobs",
    "pick_device",
    "prepare_tokenizer",
    "response_positions",
    "save_tiny",
    "token_logprobs",
]
