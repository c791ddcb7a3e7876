"""Where a run executes: rank, world size, collectives, sharding. The only code that knows
``torch.distributed``.

One process is a :class:`Runtime` of world size 1, and every collective is then the identity;
``torchrun --nproc_per_node N -m oreal train ...`` gives N ranks (gloo on CPU, NCCL on GPU).
The trainer calls the same methods either way, so there is one code path:

- :meth:`Runtime.share` splits the step's prompts into contiguous per-rank shares (a group of
  K rollouts never spans ranks);
- :meth:`Runtime.all_reduce` / :meth:`Runtime.all_gather_object` combine counts and logs;
- :meth:`Runtime.lockstep` pads a rank's micro-batches to the global count, because sharded
  (FSDP) forwards and backwards are collectives every rank must join;
- :meth:`Runtime.shard` applies FSDP2 (``torch.distributed.fsdp.fully_shard``) to each decoder
  layer and the root, bf16 compute with fp32 gradient reduction on GPU;
- :meth:`Runtime.full_state_dict` / :meth:`Runtime.full_optimizer_state` gather what a
  checkpoint or the rollout engine needs; :meth:`Runtime.load_optimizer_state` shards it back.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Runtime", "exit_finished_rank", "full_value", "through_root"]


@dataclass
class Runtime:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, device: str | torch.device | None = None) -> Runtime:
        """A single process, or this rank of a ``torchrun`` launch (``WORLD_SIZE`` > 1).

        Under torchrun the process group is initialised here: NCCL when the device is CUDA (each
        rank takes ``cuda:LOCAL_RANK``), gloo otherwise.
        """
        from oreal.models import pick_device

        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(device=pick_device(device))
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        chosen = pick_device(device)
        if chosen.type == "cuda":
            chosen = torch.device("cuda", local_rank)
            torch.cuda.set_device(chosen)
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if chosen.type == "cuda" else "gloo",
                timeout=datetime.timedelta(minutes=60),  # a main-rank eval keeps others waiting
            )
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)

    # ------------------------------------------------------------------------------ facts
    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The rank that writes the run directory, logs and checkpoints."""
        return self.rank == 0

    def share(self, count: int) -> range:
        """This rank's contiguous part of ``count`` items (sizes differ by at most one)."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    # ------------------------------------------------------------------------------ collectives
    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or ``"max"``) over ranks; returns a new tensor on the tensor's device."""
        out = tensor.clone()
        if self.distributed:
            reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
            moved = out.to(self._collective_device())
            dist.all_reduce(moved, op=reduce_op)
            out = moved.to(tensor.device)
        return out

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (picklable objects)."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """The main rank's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def lockstep(self, count: int, size: int) -> list[slice | None]:
        """Micro-batch slices of ``count`` local rows, padded with ``None`` (run a placeholder
        batch) up to the largest count of any rank, so every rank runs as many forwards."""
        local = -(-count // size) if count else 0
        steps = int(self.all_reduce(torch.tensor([local]), op="max")[0])
        slices: list[slice | None] = [
            slice(start, min(start + size, count)) for start in range(0, count, size)
        ]
        return slices + [None] * (steps - len(slices))

    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    # ------------------------------------------------------------------------------ sharding
    def shard(self, model: nn.Module, layers: Sequence[nn.Module]) -> nn.Module:
        """FSDP2: shard each of ``layers`` (the decoder blocks) and then the root, in place.

        On GPU parameters are gathered in bf16 and gradients reduced in fp32; on CPU (gloo) the
        module keeps its dtype and bf16 compute comes from autocast as in one process. A world
        of one is returned untouched.
        """
        if not self.distributed:
            return model
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        kwargs: dict[str, Any] = {}
        if self.device.type == "cuda":
            kwargs["mp_policy"] = MixedPrecisionPolicy(
                param_dtype=torch.bfloat16, reduce_dtype=torch.float32
            )
        for layer in layers:
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        return model

    def full_state_dict(self, model: nn.Module, *, everywhere: bool = False) -> dict[str, Any]:
        """The unsharded weights on the CPU: on the main rank only (checkpoints), or on every
        rank with ``everywhere`` (to refresh a local rollout engine). A collective."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if not self.distributed:
            return {k: v.detach().cpu() for k, v in model.state_dict().items()}
        options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
        state = get_model_state_dict(model, options=options)
        return {k: v.detach().cpu() for k, v in state.items()}

    def full_optimizer_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        """The optimizer state keyed by parameter name, unsharded, on the main rank.

        Before the first optimizer step the state is empty, and it is returned empty: torch's
        ``get_optimizer_state_dict`` would otherwise initialise it with a zero-gradient step,
        which Adam counts, so saving would change the run.
        """
        if not optimizer.state:
            return {"state": {}, "param_groups": []}
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=self.distributed)
        return get_optimizer_state_dict(model, optimizer, options=options)

    def load_model_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Load full (unsharded) tensors, all of the module's or a subset, into ``model``."""
        if not self.distributed:
            result = model.load_state_dict(state, strict=False)
            if result.unexpected_keys:
                raise KeyError(f"unexpected weights: {result.unexpected_keys[:5]}")
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, state, options=options)

    def load_optimizer_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        """Load a :meth:`full_optimizer_state` (read on every rank) into a sharded optimizer.

        A state saved before the first optimizer step is empty and is not loaded: loading it
        would make torch initialise the moments with one zero-gradient step, which counts as
        a step (Adam's bias correction would then be one step ahead).
        """
        if not state.get("state"):
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=options)

    def close(self) -> None:
        """Destroy the process group, as torch asks before a program exits; call it once a run
        has finished on every rank (not after an error: other ranks may be inside a collective).
        """
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def full_value(tensor: torch.Tensor) -> float:
    """A scalar as a float; a sharded (DTensor) one is gathered first (a gradient norm)."""
    return float(tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor)


def through_root(model: nn.Module, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` as ``model``'s forward when ``model`` is an FSDP root.

    Scoring calls the decoder and the output head separately (to keep only response
    positions); FSDP2 gathers the root's own parameters (embeddings, final norm, head) in hooks
    around the root's ``__call__``, so the computation must run inside that call. Elsewhere
    ``fn`` is simply called.
    """
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        return fn(*args, **kwargs)
    model.forward = fn  # an instance attribute shadows the class's forward for this call
    try:
        return model(*args, **kwargs)
    finally:
        del model.forward


def exit_finished_rank(code: int = 0) -> NoReturn:
    """End a rank whose run has finished and whose process group is destroyed, skipping
    Python's interpreter finalization.

    gloo's C++ threads can still hold tensors whose Python references are released during
    finalization, and taking the GIL there aborts the process (SIGABRT, "terminate called
    without an active exception"; diagnosed in pytorch/pytorch PR #179291). torchrun then
    reports a failed run that had finished: 5 of 83 two-rank runs here without
    ``destroy_process_group``, 1 of 66 with it. Everything a run writes is closed by then
    (atomic files, logs), so flushing the streams and ``os._exit`` loses nothing.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
