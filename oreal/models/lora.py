"""LoRA on the policy through peft (Hu et al., arXiv 2106.09685), and merged weights.

Only the adapters train; the frozen base is also the KL reference (scored with the adapters
disabled, :class:`oreal.models.reference.FrozenReference`), so no second copy of the model is
kept. :class:`MergedLoraState` shows a peft state dict as plain transformers weights
W' = W + (α/r)·B·A, merged as each is read: what a checkpoint's ``policy/`` holds
(``from_pretrained`` loads it with no peft installed) and what a rollout engine with its own
weights is synced with. It works on a gathered (FSDP-unsharded) state dict as well as on a
local one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = [
    "PEFT_HINT",
    "LoraSettings",
    "MergedLoraState",
    "apply_lora",
    "is_lora",
    "require_peft",
]

PEFT_HINT = "pip install 'oreal[peft]'"
ADAPTER = "default"


@dataclass(frozen=True)
class LoraSettings:
    """``model.lora`` / ``token_rm.lora_*``: rank r, alpha α, target modules, dropout."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: str | list[str] = field(default="all-linear")


def require_peft(what: str = "LoRA") -> None:
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{what} needs the peft package: {PEFT_HINT}") from error


def apply_lora(
    model: nn.Module, settings: LoraSettings, *, task_type: str | None = "CAUSAL_LM"
) -> nn.Module:
    """Wrap ``model`` with trainable LoRA adapters; every base weight is frozen.

    ``task_type=None`` wraps a bare module (the token RM's decoder) rather than a causal LM.
    """
    require_peft()
    from peft import LoraConfig, get_peft_model

    for param in model.parameters():
        param.requires_grad_(False)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
        task_type=task_type,
    )
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` property: a
        # FutureWarning between the two libraries that no user setting can act on
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, config)


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def lora_scaling(model: nn.Module) -> float:
    config = model.peft_config[ADAPTER]  # type: ignore[index]
    return float(config.lora_alpha) / float(config.r)


class MergedLoraState(Mapping[str, Tensor]):
    """A peft LoRA state dict (``base_model.model.`` keys) seen as plain transformers weights,
    each merged when it is read: W' = W + scaling·B·A in fp32, cast back to W's dtype; other
    weights pass through with the peft prefix removed.

    Reading the weights one at a time (a rollout engine copying them into its own buffers, a
    sharded checkpoint writer) then holds one merged tensor at a time instead of a second
    copy of every adapted layer (424 MB for SmolLM2-135M with all-linear adapters). Each read
    merges again: materialise with ``dict(...)`` to read a weight twice.
    """

    def __init__(self, state: Mapping[str, Tensor], scaling: float) -> None:
        self._state = state
        self._scaling = scaling
        prefix = "base_model.model."
        self._sources: dict[str, str] = {}
        for key in state:
            if ".lora_A." in key or ".lora_B." in key or ".lora_dropout." in key:
                continue
            self._sources[key.removeprefix(prefix).replace(".base_layer.", ".")] = key

    def __getitem__(self, name: str) -> Tensor:
        key = self._sources[name]
        value = self._state[key]
        if ".base_layer." not in key or not name.endswith(".weight"):
            return value
        module = key[: key.index(".base_layer.")]
        lora_a = self._state.get(f"{module}.lora_A.{ADAPTER}.weight")
        lora_b = self._state.get(f"{module}.lora_B.{ADAPTER}.weight")
        if lora_a is None or lora_b is None:
            return value
        delta = self._scaling * (lora_b.float() @ lora_a.float())
        return (value.float() + delta).to(value.dtype)

    def unmerged(self, name: str) -> Tensor:
        """The weight ``name`` before merging: its shape and dtype are the merged one's."""
        return self._state[self._sources[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


@torch.no_grad()
def trainable_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The tensors that train (LoRA adapters), keyed as in ``model.state_dict()``."""
    names = {name for name, param in model.named_parameters() if param.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}
