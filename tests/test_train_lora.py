"""LoRA on the policy: only adapters train, the frozen base is the KL reference (no copy), and
checkpoints hold the adapter plus a merged model that plain transformers loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from oreal.train import OrealConfig, Trainer

TinyConfig = Callable[..., OrealConfig]
LORA = (
    "model.lora.rank=4",
    "model.lora.alpha=8",
    "algorithm.name=grpo",
    "algorithm.params.kl_coef=0.05",
    "optim.lr=1e-2",
)


def test_lora_trains_adapters_and_saves_a_merged_model(
    tiny_config: TinyConfig, tiny_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    trainer = Trainer(
        args=tiny_config(tmp_path / "run", "train.steps=2", *LORA, reward="has_digit")
    )
    trainable = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert trainer.reference is not None and trainer.reference.module is trainer.policy
    record = trainer.train_step()
    assert record["kl"] == 0.0  # the first step: the adapters (B = 0) change nothing yet
    record = trainer.train_step()
    assert record["kl"] > 0.0  # the reference is the base without the trained adapters
    trainer.save()

    checkpoint = tmp_path / "run" / "checkpoints" / "step-000002"
    assert (checkpoint / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(str(checkpoint / "policy"))
    initial = load_file(str(tiny_model_dir / "model.safetensors"))
    saved = load_file(str(checkpoint / "policy" / "model.safetensors"))
    assert saved.keys() == initial.keys()  # plain transformers names, no peft prefix
    assert any(not torch.equal(saved[k], initial[k]) for k in saved), "nothing was merged"
    ids = torch.tensor([[5, 17, 23, 42, 8]])
    with torch.no_grad():
        expected = trainer.policy(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "precision",
    [(), ("model.bf16_autocast=true", "model.param_dtype=bfloat16")],
    ids=["fp32", "bf16_weights"],
)
def test_lora_resume_is_exact(
    tiny_config: TinyConfig, tmp_path: Path, precision: tuple[str, ...]
) -> None:
    pytest.importorskip("peft")
    settings = ("train.steps=3", *LORA, *precision)
    Trainer(args=tiny_config(tmp_path / "straight", *settings, reward="has_digit")).train()
    interrupted = Trainer(args=tiny_config(tmp_path / "resumed", *settings, reward="has_digit"))
    interrupted.train_step()
    interrupted.save()
    del interrupted
    resumed = Trainer(
        args=tiny_config(tmp_path / "resumed", *settings, reward="has_digit"),
        resume_from=tmp_path / "resumed",
    )
    assert resumed.step == 1
    resumed.train()
    for name in ("policy/model.safetensors", "adapter/adapter_model.safetensors"):
        straight = load_file(str(tmp_path / "straight" / "checkpoints/step-000003" / name))
        again = load_file(str(tmp_path / "resumed" / "checkpoints/step-000003" / name))
        for key in straight:
            assert torch.equal(straight[key], again[key]), (name, key)


def test_lora_run_syncs_and_saves_the_merged_weights_one_at_a_time(
    tiny_config: TinyConfig, tmp_path: Path
) -> None:
    """The engine of a LoRA run decodes W + (α/r)·B·A (peft's own merge), read through
    MergedLoraState; the streamed writer shards those weights, and transformers loads them."""
    pytest.importorskip("peft")
    import copy

    from oreal.models.lora import MergedLoraState, lora_scaling
    from oreal.rollout import FastGenerator
    from oreal.train.checkpoint import save_streamed_weights

    trainer = Trainer(args=tiny_config(tmp_path / "run", *LORA, reward="has_digit"))
    trainer.train_step()
    trainer.train_step()  # adapters trained and pushed into the engine after each update
    engine = trainer.generator
    assert isinstance(engine, FastGenerator)
    peft_merged = copy.deepcopy(trainer.policy).merge_and_unload()
    expected = FastGenerator(peft_merged, trainer.tokenizer).decoder
    for name in ("embed", "lm_head", "final_norm"):
        assert torch.equal(getattr(engine.decoder, name), getattr(expected, name)), name
    for name in ("qkv", "out", "gate_up", "down", "attn_norm", "mlp_norm"):
        for layer, (got, want) in enumerate(
            zip(getattr(engine.decoder, name), getattr(expected, name), strict=True)
        ):
            torch.testing.assert_close(got, want, atol=0, rtol=2**-8, msg=f"{name}[{layer}]")

    state = MergedLoraState(trainer.policy.state_dict(), lora_scaling(trainer.policy))
    folder = tmp_path / "sharded"
    save_streamed_weights(folder, trainer.policy.get_base_model(), state, shard_bytes=20_000)
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 2 and (folder / "model.safetensors.index.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(folder))
    ids = torch.tensor([[5, 17, 23, 42, 8]])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids).logits, trainer.policy(input_ids=ids).logits, atol=1e-5, rtol=1e-5
        )
