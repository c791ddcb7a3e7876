"""Training: the loop (:mod:`~oreal.train.loop`), one policy update over a rollout batch
(:mod:`~oreal.train.update`), checkpoints that resume exactly, and the run's metrics."""

from oreal.train.config import OrealConfig

__all__ = ["OrealConfig"]
