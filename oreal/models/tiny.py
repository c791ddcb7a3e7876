"""Tiny random models and an offline tokenizer, for tests and smoke runs.

Everything here is built in memory from code, so tests across the project can exercise the full
load -> generate -> score -> update path without network access or large weights. Building a
tokenizer plus a 2-layer model takes well under a second and is deterministic for a given seed.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "TINY_SPECIAL_TOKENS",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "save_tiny",
]

#: Special tokens, in id order: ids 0..3 are stable so tests can refer to them.
TINY_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>")

#: One token per character: enough for math prompts and ``\boxed{...}`` answers.
_CHARS: str = string.digits + string.ascii_letters + " +-*/=()[]{}\\^_.,:;!?<>|$%&#@'\"~`\n"

#: ChatML, the same layout SmolLM2 and Qwen use, so prompt-building code is exercised for real.
TINY_CHAT_TEMPLATE: str = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """Build a character-level fast tokenizer with ChatML special tokens, fully offline.

    A BPE model with an empty merge list is a plain character vocabulary; the ``Fuse`` decoder
    joins pieces without inserting spaces, so ``decode(encode(text)) == text`` for covered
    characters. Unknown characters map to ``<|endoftext|>`` (the unk token). ``<|im_end|>`` is the
    eos token and ``<pad>`` a distinct pad token, so tests notice code that confuses the two.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*TINY_SPECIAL_TOKENS, *_CHARS])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=TINY_SPECIAL_TOKENS[0]))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(TINY_SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
        padding_side="left",
        model_max_length=2048,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    max_positions: int = 1024,
    tie_word_embeddings: bool = False,
) -> LlamaForCausalLM:
    """Build a randomly initialised fp32 Llama model sized for ``tokenizer``.

    The global RNG is left untouched (a forked RNG is seeded), so calling this inside a test does
    not change the random stream of the code under test. Embeddings are untied by default so
    tests can edit ``lm_head`` without touching the input embedding.
    """
    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate if intermediate is not None else 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=0.2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.float().eval()


def save_tiny(path: str | Path, *, seed: int = 0, **model_kwargs: int | bool) -> Path:
    """Write a tiny model and its tokenizer with ``save_pretrained`` so ``load_policy(path)`` works.

    The output is exactly what a training run checkpoint looks like (config.json, safetensors,
    tokenizer files), so the same loading code path is tested.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed, **model_kwargs)  # type: ignore[arg-type]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
