"""Rewards as terms: the verifier and plain functions, each weighted and logged on its own.

``reward.functions`` in the config (or ``reward_funcs`` in the Python API) lists the terms::

    reward:
      functions:
        - verifier                                     # weight 1: correct -> 1.0, else 0.0
        - {function: my_rewards.py:length_penalty, weight: 1.0, name: length}

A function is called TRL-style with keyword arguments and returns one float per completion,
``None`` to abstain, or a list of per-token floats (:mod:`oreal.rewards.terms`). The stage
(:mod:`oreal.rewards.stage`) fills ``correct``, ``reward`` and the per-term values on each row
of the step record and gives each algorithm the numbers it learns from.
"""

from oreal.rewards.stage import RewardStage, RewardTerm, build_terms, check_terms_for
from oreal.rewards.terms import FunctionTerm, RewardError, TermValues, VerifierTerm

__all__ = [
    "FunctionTerm",
    "RewardError",
    "RewardStage",
    "RewardTerm",
    "TermValues",
    "VerifierTerm",
    "build_terms",
    "check_terms_for",
]
