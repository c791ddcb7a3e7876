"""oreal: reinforcement learning from outcome rewards for LLM reasoning.

The data path, in the order of the sub-packages:
problems (``oreal.data``) -> rollouts (``oreal.rollout``) -> verdicts and rewards
(``oreal.verify``, ``oreal.rewards``) -> advantages and losses (``oreal.algorithms``,
``oreal.token_rm``) -> update (``oreal.train``) -> evaluation and search (``oreal.eval``).
One record, :class:`oreal.batch.StepBatch`, carries a step's data through it.

``from oreal import Trainer, OrealConfig`` is the Python API (imported on first use, so that
``oreal --help`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["OrealConfig", "Trainer", "__version__"]

if TYPE_CHECKING:
    from oreal.train import OrealConfig, Trainer


def __getattr__(name: str) -> Any:
    if name in ("Trainer", "OrealConfig"):
        import oreal.train

        return getattr(oreal.train, name)
    raise AttributeError(f"module 'oreal' has no attribute {name!r}")
