"""The token RM inside the trainer (tiny model): warm-up freeze, exact resume, config, samples."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from oreal.config_io import ConfigError, load_config
from oreal.train import Trainer
from oreal.train.config import OrealConfig

TinyConfig = Callable[..., OrealConfig]  # the conftest fixtures' factories
RM_METRICS = (
    "rm_loss",
    "rm_accuracy",
    "rm_auc",
    "rm_weight_pos_mean",
    "rm_weight_neg_mean",
    "rm_nonzero_frac",
    "rm_lr",
    "policy_frozen",
)


def clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}


def test_warm_up_trains_only_the_rm_then_the_policy_moves(
    tiny_rm_config: TinyConfig, tmp_path: Path
) -> None:
    trainer = Trainer(args=tiny_rm_config(tmp_path / "run", "train.steps=3"))
    assert trainer.token_rm is not None
    policy_before = clone(trainer.policy.state_dict())
    rm_before = clone(trainer.token_rm.model.trainable_state_dict())
    for _ in range(2):
        record = trainer.train_step()
        assert record["policy_frozen"] == 1.0 and record["sequences_kept"] > 0
        assert "grad_norm" not in record  # no policy forward/backward at all
    for key, value in trainer.policy.state_dict().items():
        assert torch.equal(value, policy_before[key]), key
    assert not trainer.optimizer.state  # the policy's AdamW never stepped
    rm_after = trainer.token_rm.model.trainable_state_dict()
    assert not torch.equal(rm_after["head.weight"], rm_before["head.weight"])
    moved = [
        k for k in rm_after if k != "head.weight" and not torch.equal(rm_after[k], rm_before[k])
    ]
    assert moved, "from the second RM step on the backbone trains too"
    # Pinned choice (docs/token_rm.md): the policy's LR schedule counts the frozen steps.
    assert trainer.scheduler.last_epoch == 2

    record = trainer.train_step()
    assert record["policy_frozen"] == 0.0
    for key in RM_METRICS:
        assert key in record, key
    changed = [
        k for k, v in trainer.policy.state_dict().items() if not torch.equal(v, policy_before[k])
    ]
    assert changed


def test_resume_with_the_rm_is_exact(tiny_rm_config: TinyConfig, tmp_path: Path) -> None:
    settings = ("train.steps=4", "token_rm.policy_freeze_steps=1")
    Trainer(args=tiny_rm_config(tmp_path / "straight", *settings)).train()

    interrupted = Trainer(args=tiny_rm_config(tmp_path / "resumed", *settings))
    interrupted.train_step()
    interrupted.train_step()
    interrupted.save()
    del interrupted
    resumed = Trainer(
        args=tiny_rm_config(tmp_path / "resumed", *settings), resume_from=tmp_path / "resumed"
    )
    assert resumed.step == 2
    resumed.train()

    def final(run: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        checkpoint = tmp_path / run / "checkpoints" / "step-000004"
        policy = load_file(str(checkpoint / "policy" / "model.safetensors"))
        rm = load_file(str(checkpoint / "token_rm.safetensors"))
        return policy, rm

    (policy_a, rm_a), (policy_b, rm_b) = final("straight"), final("resumed")
    assert rm_a.keys() == rm_b.keys() and "head.weight" in rm_a
    assert torch.count_nonzero(rm_a["head.weight"]) > 0, "the RM never trained"
    for key in policy_a:
        assert torch.equal(policy_a[key], policy_b[key]), key
    for key in rm_a:
        assert torch.equal(rm_a[key], rm_b[key]), key
    # The RM metrics of the resumed steps (3, 4; steps 1-2 ran outside train()) match too.
    resumed_log = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").open()]
    straight_log = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").open()]
    assert [m["step"] for m in resumed_log] == [3, 4]
    assert [m["rm_loss"] for m in resumed_log] == [m["rm_loss"] for m in straight_log[2:]]


def test_samples_carry_tokens_and_their_weights(tiny_rm_config: TinyConfig, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    Trainer(args=tiny_rm_config(run_dir, "train.steps=3")).train()
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").open()]
    weighted = [s for s in samples if "token_weights" in s]
    assert weighted, "trained rows come first among the logged samples"
    for sample in weighted:
        assert sample["kept"]
        assert len(sample["tokens"]) == len(sample["token_weights"]) == len(sample["token_q"])
        assert all(0.0 <= w <= 1.0 for w in sample["token_weights"])
    first = [s for s in weighted if s["step"] == 1]
    assert first and all(w == 0.0 for s in first for w in s["token_weights"])  # zero head
    assert any(w > 0 for s in weighted if s["step"] == 3 for w in s["token_weights"])


def test_token_rm_config_errors(tiny_rm_config: TinyConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"algorithm\.name=oreal"):
        tiny_rm_config(tmp_path, "algorithm.name=grpo")
    with pytest.raises(ConfigError, match="leaves no policy update"):
        tiny_rm_config(tmp_path, "train.steps=2")
    with pytest.raises(ConfigError, match="weight_source"):
        tiny_rm_config(tmp_path, "token_rm.weight_source=mean")
    # The RM off (the default) with another algorithm is fine.
    config = tiny_rm_config(tmp_path, "algorithm.name=grpo", "token_rm.enabled=false")
    assert config.token_rm.enabled is False


def test_lora_rm_shares_the_reference_without_changing_the_kl(
    tiny_rm_config: TinyConfig, tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    trainer = Trainer(
        args=tiny_rm_config(
            tmp_path / "run",
            "token_rm.backbone=lora",
            "token_rm.policy_freeze_steps=1",
            "train.steps=2",
        )
    )
    assert trainer.token_rm is not None and trainer.reference is not None
    trainer.train_step()
    record = trainer.train_step()
    # Step 2's RM update moved the adapters inside the shared reference *before* the policy
    # scored it; the reference is read without them, so at the first policy step (policy ==
    # initial policy) the k3 KL is exactly 0.
    assert record["policy_frozen"] == 0.0 and record["kl"] == 0.0
    lora = {k: v for k, v in trainer.token_rm.model.trainable_state_dict().items() if "lora_B" in k}
    assert any(torch.count_nonzero(v) > 0 for v in lora.values())


def test_demo_token_rm_preset_is_the_demo_plus_the_rm() -> None:
    from oreal.configs import resolve_config_path

    demo = load_config(OrealConfig, resolve_config_path("demo"), []).model_dump()
    with_rm = load_config(OrealConfig, resolve_config_path("demo_token_rm"), []).model_dump()
    rm = with_rm.pop("token_rm")
    assert rm["enabled"] and demo.pop("token_rm")["enabled"] is False
    # Same policy steps as demo.yaml, after the RM-only warm-up steps.
    assert with_rm["train"].pop("steps") == demo["train"].pop("steps") + rm["policy_freeze_steps"]
    assert with_rm == demo, "keep configs/demo_token_rm.yaml in sync with configs/demo.yaml"


def test_the_rm_labels_and_weights_reach_the_rm_and_the_policy_loss(
    tiny_rm_config: TinyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row by row: the RM learns from ``positive`` of the kept rows, and the policy loss gets
    w+ on exactly those rows and w- on the others, from the RM's pre-update logits."""
    import oreal.token_rm.trainer as step_module
    import oreal.train.trainer as loop_module
    import oreal.train.update as update_module
    from oreal.token_rm import oreal_token_weights

    seen: dict[str, object] = {}

    def spy(module: object, name: str, key: str, pick: Callable) -> None:
        real = getattr(module, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            result = real(*args, **kwargs)
            seen.setdefault(key, []).append(pick(args, kwargs, result))  # type: ignore[union-attr]
            return result

        monkeypatch.setattr(module, name, wrapper)

    spy(loop_module, "compute_advantages", "advantages", lambda a, k, r: r)
    spy(step_module, "token_rm_update", "rm", lambda a, k, r: (a[3].clone(), r[0].clone()))
    spy(update_module, "compute_policy_loss", "loss", lambda a, k, r: k)

    # One micro-batch holds every kept row, so the loss sees the whole weight tensor at once.
    trainer = Trainer(
        args=tiny_rm_config(tmp_path / "run", "train.steps=3", "train.micro_batch_size=64")
    )
    for _ in range(3):
        trainer.train_step()
    result = seen["advantages"][-1]
    kept = result.keep.nonzero().flatten()
    labels, scores = seen["rm"][-1]
    assert torch.equal(labels, result.positive[kept].float())
    (loss_call,) = seen["loss"]  # steps 1-2 are frozen: one policy loss, at step 3
    positive = loss_call["positive"]
    assert torch.equal(positive.cpu(), result.positive[kept])
    mask = loss_call["response_mask"]
    expected = oreal_token_weights(scores[:, : mask.shape[1]], mask.bool(), positive).weights
    passed = loss_call["token_weights"]
    assert passed is not None and torch.equal(passed, expected)
    assert passed.sum() > 0, "a trained RM gives some non-zero weight"


def test_rm_warm_up_follows_the_release(tiny_rm_config: TinyConfig, tmp_path: Path) -> None:
    """The release's warm-up (train_oreal.py 368-415): lr·(s+1)/W from step 0, so the RM's
    first update already runs at lr/W; the peak comes at step W, then the cosine."""
    trainer = Trainer(
        args=tiny_rm_config(
            tmp_path / "run",
            "train.steps=5",
            "token_rm.warmup_steps=2",
            "token_rm.min_lr_ratio=0.2",
        )
    )
    lrs = [trainer.train_step()["rm_lr"] for _ in range(5)]
    # steps 0, 1: 1/2 and 2/2 of 1e-2; steps 2-4: cosine over T - W = 3 steps to the floor.
    cosine = [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * i / 3)) for i in range(3)]
    assert lrs == pytest.approx([0.5e-2, 1e-2] + [1e-2 * c for c in cosine])


def test_paper_form_trains_with_the_rm(tiny_rm_config: TinyConfig, tmp_path: Path) -> None:
    settings = ("train.steps=3", "algorithm.params.form=paper", "token_rm.weight_source=per_token")
    trainer = Trainer(args=tiny_rm_config(tmp_path / "run", *settings))
    before = clone(trainer.policy.state_dict())
    records = [trainer.train_step() for _ in range(3)]
    assert records[-1]["policy_frozen"] == 0.0
    assert all(torch.isfinite(torch.tensor(r["rm_loss"])) for r in records if "rm_loss" in r)
    moved = [k for k, v in trainer.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert moved
