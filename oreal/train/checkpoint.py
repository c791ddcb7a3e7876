"""Checkpoints that resume exactly and hold only data: safetensors and JSON, no pickle.

Layout of ``RUN_DIR/checkpoints/step-000010/``::

    policy/              save_pretrained() output; for LoRA the merged weights in transformers'
                         sharded layout, merged one shard at a time: loads with plain
                         transformers, no oreal and no peft needed
    adapter/             LoRA only: the peft adapter (adapter_config.json + safetensors)
    token_rm.safetensors OREAL's token RM, its trained tensors (all, or adapters + head)
    optimizer/NAME.safetensors + NAME.json
                         the full (unsharded) AdamW state of the policy / token RM, keyed by
                         parameter name: tensors in safetensors, the rest (param groups) in JSON
    trainer_state.json   step, data position, LR schedules, format version

Nothing here is executed when read: a run directory someone sends you is data. There is no
random-number state to save: every draw is keyed by (seed, purpose, step, ...)
(:mod:`oreal.seeding`). Under data parallelism the trainer gathers full tensors to the main
rank, which writes; every rank reads the checkpoint back and shards it again. A checkpoint is
written into ``step-N.tmp`` and renamed into place (:func:`oreal.atomic.atomic_dir`), so a kill
never leaves a half-written checkpoint that ``--resume`` would take.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from oreal.atomic import atomic_dir, describe_os_error
from oreal.errors import UserError
from oreal.models.loading import quiet_hf_progress
from oreal.runs import checkpoint_dir, latest_checkpoint, list_checkpoints

if TYPE_CHECKING:
    from oreal.train.trainer import Trainer

__all__ = [
    "FORMAT",
    "Checkpoint",
    "checkpoint_dir",
    "latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "read_checkpoint",
    "write_checkpoint",
]

FORMAT = 2
#: Shard size of a LoRA run's merged policy: its merged weights exist one shard at a time.
MERGED_SHARD_BYTES = 128 * 2**20


@dataclass
class Checkpoint:
    """Everything besides the policy's weights that a resumed run needs, plus the tensors."""

    step: int
    data_epoch: int
    data_position: int
    schedulers: dict[str, dict[str, Any]] = field(default_factory=dict)
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_rm: dict[str, torch.Tensor] | None = None
    adapter: dict[str, torch.Tensor] | None = None


# ------------------------------------------------------------------------------ optimizer state
def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a full optimizer state dict into tensors and a JSON skeleton."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton: dict[str, Any] = {"state": {}, "param_groups": []}
    for name, values in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
                entry[key] = {"tensor": f"{name}/{key}"}
            else:
                entry[key] = value
        skeleton["state"][str(name)] = entry
    for group in state["param_groups"]:
        skeleton["param_groups"].append(
            {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        )
    return tensors, skeleton


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], skeleton: dict[str, Any]) -> dict:
    state = {
        name: {
            key: tensors[value["tensor"]] if isinstance(value, dict) else value
            for key, value in entry.items()
        }
        for name, entry in skeleton["state"].items()
    }
    groups = []
    for group in skeleton["param_groups"]:
        restored = dict(group)
        if "betas" in restored:
            restored["betas"] = tuple(restored["betas"])
        groups.append(restored)
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------ write / read
def prune_checkpoints(run_dir: Path, *, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints (``None`` keeps them all)."""
    if keep is None:
        return
    import shutil

    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def write_checkpoint(
    run_dir: Path,
    checkpoint: Checkpoint,
    *,
    policy: Any,
    policy_state: Mapping[str, torch.Tensor],
    tokenizer: Any,
    adapter_writer: Any = None,
) -> Path:
    """Write ``checkpoint`` atomically (main rank only) and return its folder.

    ``policy`` is a transformers model whose ``save_pretrained`` writes ``policy_state`` (the
    full weights) with its config when it is a dict; any other mapping (a LoRA run's
    :class:`~oreal.models.lora.MergedLoraState`) is read one shard at a time instead
    (:func:`save_streamed_weights`). ``adapter_writer(folder)`` writes a LoRA adapter.
    """
    final = checkpoint_dir(run_dir, checkpoint.step)
    try:
        return _write(final, checkpoint, policy, policy_state, tokenizer, adapter_writer)
    except OSError as error:  # a full disk, say: the staging folder is gone, the old ones stay
        raise CheckpointError(describe_os_error(error, final)) from None


def _write(
    final: Path,
    checkpoint: Checkpoint,
    policy: Any,
    policy_state: Mapping[str, torch.Tensor],
    tokenizer: Any,
    adapter_writer: Any,
) -> Path:
    with atomic_dir(final) as staging, quiet_hf_progress():
        if isinstance(policy_state, dict):
            policy.save_pretrained(
                staging / "policy", state_dict=policy_state, safe_serialization=True
            )
        else:
            save_streamed_weights(staging / "policy", policy, policy_state)
        tokenizer.save_pretrained(staging / "policy")
        if adapter_writer is not None:
            adapter_writer(staging / "adapter")
        if checkpoint.token_rm is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.token_rm.items()}
            save_file(tensors, str(staging / "token_rm.safetensors"))
        (staging / "optimizer").mkdir()
        for name, state in checkpoint.optimizers.items():
            tensors, skeleton = _flatten_optimizer(state)
            save_file(tensors, str(staging / "optimizer" / f"{name}.safetensors"))
            (staging / "optimizer" / f"{name}.json").write_text(json.dumps(skeleton))
        record = {
            "format": FORMAT,
            "step": checkpoint.step,
            "data_epoch": checkpoint.data_epoch,
            "data_position": checkpoint.data_position,
            "schedulers": checkpoint.schedulers,
        }
        (staging / "trainer_state.json").write_text(json.dumps(record, indent=2) + "\n")
    return final


def _checked(name: str, tensor: torch.Tensor, dtype: torch.dtype | None, step: int) -> torch.Tensor:
    """``tensor`` in the save dtype; a non-finite policy weight stops the checkpoint."""
    if not tensor.is_floating_point():
        return tensor
    if not torch.isfinite(tensor).all():
        raise CheckpointError(
            f"the policy has non-finite weights at step {step} ({name}, ...): not "
            "saving them; the last good checkpoint stays (lower optim.lr?)"
        )
    return tensor.to(dtype) if dtype is not None else tensor


class _CheckedWeights(Mapping[str, torch.Tensor]):
    """A lazy weight mapping whose reads go through :func:`_checked`."""

    def __init__(self, state: Any, dtype: torch.dtype | None, step: int) -> None:
        self._state, self._dtype, self._step = state, dtype, step

    def __getitem__(self, name: str) -> torch.Tensor:
        return _checked(name, self._state[name], self._dtype, self._step)

    def unmerged(self, name: str) -> torch.Tensor:
        """Weight ``name`` as stored before merging and casting (for shard sizes)."""
        return self._state.unmerged(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def save_streamed_weights(
    folder: Path,
    model: Any,
    state: Mapping[str, torch.Tensor],
    *,
    shard_bytes: int = MERGED_SHARD_BYTES,
) -> None:
    """``state`` in transformers' safetensors layout (``model.safetensors``, or
    ``model-0000i-of-0000n`` shards and ``model.safetensors.index.json``) with ``model``'s
    config, each shard's tensors read from ``state`` only while that shard is written: a lazy
    mapping (a LoRA run's merged weights, 424 MB more than the model for SmolLM2-135M if made
    at once) then costs one shard. Shard sizes come from ``state.unmerged(name)`` when
    ``state`` has it (the stored tensor, before a save-dtype cast: bf16 shards are then half
    the size). A tied ``lm_head.weight`` is left out, as ``save_pretrained`` does."""
    folder.mkdir(parents=True)
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tied = getattr(model.config, "tie_word_embeddings", False)
    names = [name for name in state if not (tied and name == "lm_head.weight")]
    sized = getattr(state, "unmerged", state.__getitem__)
    shards: list[list[str]] = [[]]
    used = 0
    for name in names:
        stored = sized(name)
        size = stored.numel() * stored.element_size()
        if shards[-1] and used + size > shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    weight_map, total = {}, 0
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        if len(shards) == 1:  # one shard: save_pretrained's single-file name, no index
            file = "model.safetensors"
        tensors = {name: state[name].detach().contiguous() for name in shard}
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(shard, file))
        del tensors
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


class CheckpointError(UserError):
    """A checkpoint that cannot be read (missing, from another format, damaged)."""


def read_checkpoint(path: Path, *, verify_weights: bool = False) -> Checkpoint:
    """Everything of a checkpoint but the policy weights (``path / "policy"``); data only.

    ``verify_weights`` also opens every safetensors file (headers only), so that a truncated
    or empty weights file is found here, not halfway through loading.
    """
    state_file = path / "trainer_state.json"
    try:
        record = json.loads(state_file.read_text(encoding="utf-8"))
        if verify_weights:
            _verify_weights(path)
        return _read(path, record)
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path} cannot be read: {error}") from None


def _verify_weights(path: Path) -> None:
    from safetensors import safe_open

    files = sorted(path.glob("**/*.safetensors"))
    if not any(f.parent.name == "policy" for f in files):
        raise CheckpointError(f"{path} has no policy weights")
    for file in files:
        if file.stat().st_size == 0:
            raise CheckpointError(f"{file} is empty")
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # safetensors raises its own error type for a bad header
            raise CheckpointError(f"{file} is damaged: {error}") from None


def _read(path: Path, record: dict[str, Any]) -> Checkpoint:
    if record.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was written by another oreal version (format {record.get('format')}, "
            f"this one reads {FORMAT})"
        )
    optimizers = {}
    for json_file in sorted((path / "optimizer").glob("*.json")):
        tensors = load_file(str(json_file.with_suffix(".safetensors")))
        skeleton = json.loads(json_file.read_text())
        optimizers[json_file.stem] = _unflatten_optimizer(tensors, skeleton)
    token_rm = path / "token_rm.safetensors"
    adapter = path / "adapter" / "adapter_model.safetensors"
    return Checkpoint(
        step=int(record["step"]),
        data_epoch=int(record["data_epoch"]),
        data_position=int(record["data_position"]),
        schedulers=record.get("schedulers", {}),
        optimizers=optimizers,
        token_rm=load_file(str(token_rm)) if token_rm.is_file() else None,
        adapter=load_file(str(adapter)) if adapter.is_file() else None,
    )


# ------------------------------------------------------------------------------ a trainer's
def save_trainer(trainer: Trainer) -> Path | None:
    """Gather what ``trainer`` must save (collective), check it, write it on the main rank."""
    from oreal.models.lora import MergedLoraState, is_lora, lora_scaling

    runtime, policy = trainer.runtime, trainer.policy
    full_peft = runtime.full_state_dict(policy) if is_lora(policy) else None
    checkpoint = Checkpoint(
        step=trainer.step,
        data_epoch=trainer.data_epoch,
        data_position=trainer.data_position,
        schedulers={"policy": trainer.scheduler.state_dict()},
        optimizers={"policy": runtime.full_optimizer_state(policy, trainer.optimizer)},
    )
    if trainer.token_rm is not None:  # the release never saves its RM; an exact resume needs it
        checkpoint.token_rm = trainer.token_rm.trained_state()
        checkpoint.optimizers["token_rm"] = trainer.token_rm.optimizer_state()
        checkpoint.schedulers["token_rm"] = trainer.token_rm.scheduler.state_dict()
    save_dtype = torch.bfloat16 if trainer.config.train.save_dtype == "bfloat16" else None
    policy_state: Mapping[str, torch.Tensor]
    if full_peft is not None:  # merged, cast and checked one weight at a time as it is written
        for name, tensor in full_peft.items():  # every rank stops together on a bad weight
            _checked(name, tensor, None, trainer.step)
        merged = MergedLoraState(full_peft, lora_scaling(policy))
        policy_state = _CheckedWeights(merged, save_dtype, trainer.step)
    else:
        full = runtime.full_state_dict(policy)
        policy_state = {k: _checked(k, v, save_dtype, trainer.step) for k, v in full.items()}
    path = None
    if runtime.is_main:

        def adapter_writer(folder: Path) -> None:
            policy.save_pretrained(folder, state_dict=full_peft)

        path = write_checkpoint(
            trainer.run_dir,
            checkpoint,
            policy=policy.get_base_model() if is_lora(policy) else policy,
            policy_state=policy_state,
            tokenizer=trainer.tokenizer,
            adapter_writer=adapter_writer if full_peft is not None else None,
        )
        prune_checkpoints(trainer.run_dir, keep=trainer.config.train.keep_checkpoints)
    runtime.barrier()
    return path


def find_resumable(resume_dir: Path | None, console: Any) -> tuple[Path | None, Checkpoint | None]:
    """The newest intact checkpoint of ``resume_dir`` (a damaged one is skipped with a
    warning), or nothing: a run killed before its first checkpoint starts over."""
    if resume_dir is None:
        return None, None
    if not (resume_dir / "config.yaml").is_file():
        raise CheckpointError(f"{resume_dir} is not a run directory (no config.yaml)")
    candidates = list_checkpoints(resume_dir)
    for path in reversed(candidates):
        try:
            return path, read_checkpoint(path, verify_weights=True)
        except CheckpointError as error:
            console.print(f"warning: skipping a damaged checkpoint: {error}")
    if candidates:
        raise CheckpointError(f"no intact checkpoint in {resume_dir}")
    console.print(f"{resume_dir} has no checkpoint yet: starting the run over in it")
    return None, None


def load_policy_weights(policy: torch.nn.Module, path: Path, checkpoint: Checkpoint) -> None:
    """The checkpoint's policy weights into the (unsharded) policy: its adapter for LoRA."""
    from oreal.models.loading import load_weights
    from oreal.models.lora import is_lora

    if is_lora(policy):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, checkpoint.adapter or {})
    else:
        load_weights(policy, path / "policy")
