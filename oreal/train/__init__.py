"""Training: the trainer (:mod:`~oreal.train.trainer`), built from a config
(:mod:`~oreal.train.build`), its cadence (:mod:`~oreal.train.callbacks`), one policy update
(:mod:`~oreal.train.update`), checkpoints that resume exactly, and the run's records."""

from oreal.train.callbacks import Callback
from oreal.train.config import OrealConfig
from oreal.train.trainer import Trainer

__all__ = ["Callback", "OrealConfig", "Trainer"]
