"""OREAL's token-level reward model as one plug-in (Lyu et al., arXiv 2502.06781, §2.4).

- :mod:`~oreal.token_rm.weights`: pure tensor functions: the sequence-level BCE, the q_t ->
  w+/w- weights, top-k rescaling, ROC-AUC.
- :mod:`~oreal.token_rm.model`: the backbone + zero-initialised scalar head, and its update.
- :mod:`~oreal.token_rm.trainer`: the RM's part of a training step (weights, update, schedule,
  checkpoint state).
- :mod:`~oreal.token_rm.inspect_view`: ``oreal inspect``, tokens coloured by their weight.
"""

from oreal.token_rm.load import LoadedTokenRM, load_token_rm
from oreal.token_rm.model import TokenRewardModel, build_token_rm, token_rm_update
from oreal.token_rm.trainer import TokenRMOutput, TokenRMTrainer
from oreal.token_rm.weights import (
    WEIGHT_SOURCES,
    TokenWeights,
    oreal_token_weights,
    roc_auc,
    sequence_logits,
    threshold_weights,
    token_probabilities,
    token_rm_loss,
    topk_rescale,
)

__all__ = [
    "WEIGHT_SOURCES",
    "LoadedTokenRM",
    "TokenRMOutput",
    "TokenRMTrainer",
    "TokenRewardModel",
    "TokenWeights",
    "build_token_rm",
    "load_token_rm",
    "oreal_token_weights",
    "roc_auc",
    "sequence_logits",
    "threshold_weights",
    "token_probabilities",
    "token_rm_loss",
    "token_rm_update",
    "topk_rescale",
]
