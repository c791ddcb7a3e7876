"""Benchmark evaluation: greedy pass@1 (OREAL's protocol), unbiased pass@k, maj@k, breakdowns.

:func:`evaluate_problems` is the library entry point (the trainer's periodic evaluation calls
it); :func:`run_evaluation` is ``oreal eval`` without the command line (output files, resume).
Importing this package is cheap: torch and the model stack load only when evaluation runs.
"""

from oreal.eval.evaluate import EvalResult, evaluate_problems, sampling_settings
from oreal.eval.metrics import assign_groups, majority_vote, normalize_answer, pass_at_k
from oreal.eval.runner import (
    EvalInputError,
    EvalSettings,
    default_ks,
    resolve_model,
    run_evaluation,
)
from oreal.eval.scoring import summarize

__all__ = [
    "EvalInputError",
    "EvalResult",
    "EvalSettings",
    "assign_groups",
    "default_ks",
    "evaluate_problems",
    "majority_vote",
    "normalize_answer",
    "pass_at_k",
    "resolve_model",
    "run_evaluation",
    "sampling_settings",
    "summarize",
]
