"""Scorers for search: one protocol (:class:`StepScorer`), five kinds, one loader.

``load_scorer(spec)`` reads what ``oreal search --scorer`` takes:

=====================================  =============================================
``verifier``                           :class:`OracleScorer`: the gold decides (upper bound)
``likelihood``                         :class:`LikelihoodScorer`: the policy's own probability
an ``oreal train`` run directory, or   :class:`TokenRMScorer`: the run's token RM
one of its ``checkpoints/step-N``
a model directory whose config names   :class:`ProcessRMScorer` (Qwen2.5-Math-PRM format)
``...ProcessRewardModel`` or
``...ForTokenClassification``
a ``...ForSequenceClassification``     :class:`OutcomeRMScorer`
model directory
=====================================  =============================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oreal.errors import UserError
from oreal.search.scorers.base import ScoreRequest, ScorerInputError, StepScorer, solution_scores

__all__ = [
    "SCORER_KEYWORDS",
    "LikelihoodScorer",
    "OracleScorer",
    "OutcomeRMScorer",
    "ProcessRMScorer",
    "ScoreRequest",
    "ScorerInputError",
    "ScorerSpecError",
    "StepScorer",
    "TokenRMScorer",
    "load_scorer",
    "scorer_kind",
    "solution_scores",
]

SCORER_KEYWORDS = ("verifier", "likelihood")


class ScorerSpecError(UserError):
    """``--scorer`` names nothing that can be loaded as a scorer."""


def __getattr__(name: str) -> Any:  # torch-heavy classes load on first use
    if name in ("LikelihoodScorer", "TokenRMScorer"):
        from oreal.search.scorers import token_level

        return getattr(token_level, name)
    if name in ("OutcomeRMScorer", "ProcessRMScorer"):
        from oreal.search.scorers import reward_models

        return getattr(reward_models, name)
    if name == "OracleScorer":
        from oreal.search.scorers.oracle import OracleScorer

        return OracleScorer
    raise AttributeError(name)


def scorer_kind(spec: str) -> str:
    """``verifier``, ``likelihood``, ``token_rm``, ``prm`` or ``orm``, judged from files only.

    Raises :class:`ScorerSpecError` with what was expected, before any model is loaded.
    """
    from oreal.search.scorers.reward_models import model_architectures

    if spec in SCORER_KEYWORDS:
        return spec
    path = Path(spec).expanduser()
    if not path.exists():
        raise ScorerSpecError(
            f"scorer {spec!r} not found: give 'verifier', 'likelihood', an oreal train run "
            "directory (token RM), or a local PRM / outcome RM model directory"
        )
    if (path / "checkpoints").is_dir() or (path / "extra" / "token_rm.pt").is_file():
        return "token_rm"
    architectures = model_architectures(path)
    if any(a.endswith(("ProcessRewardModel", "ForTokenClassification")) for a in architectures):
        return "prm"
    if any(a.endswith(("ForSequenceClassification", "ForRewardModel")) for a in architectures):
        return "orm"
    raise ScorerSpecError(
        f"{spec} is neither an oreal train run (checkpoints/) nor a reward model directory "
        f"(config.json architectures {architectures or 'missing'}: expected *ProcessRewardModel, "
        "*ForTokenClassification or *ForSequenceClassification)"
    )


def load_scorer(
    spec: str,
    *,
    verifier: Any = None,
    policy: Any = None,
    tokenizer: Any = None,
    device: Any = None,
    batch_size: int = 16,
    autocast: bool = True,
) -> StepScorer:
    """Build the scorer ``spec`` names (see the module docstring).

    ``verifier`` is needed for ``verifier``; ``policy`` and ``tokenizer`` (the model that
    generates) for ``likelihood``.
    """
    kind = scorer_kind(spec)
    if kind == "verifier":
        if verifier is None:
            raise ScorerSpecError("the verifier scorer needs a Verifier")
        from oreal.search.scorers.oracle import OracleScorer

        return OracleScorer(verifier)
    if kind == "likelihood":
        if policy is None or tokenizer is None:
            raise ScorerSpecError("the likelihood scorer needs the policy and its tokenizer")
        from oreal.search.scorers.token_level import LikelihoodScorer

        return LikelihoodScorer(policy, tokenizer, batch_size=batch_size, autocast=autocast)
    if kind == "token_rm":
        from oreal.search.scorers.token_level import TokenRMScorer

        return TokenRMScorer.from_path(
            spec, device=device, batch_size=batch_size, autocast=autocast
        )
    from oreal.search.scorers.reward_models import OutcomeRMScorer, ProcessRMScorer

    cls = ProcessRMScorer if kind == "prm" else OutcomeRMScorer
    return cls.from_path(spec, device=device, batch_size=batch_size)
