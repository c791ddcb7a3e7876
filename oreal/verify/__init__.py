"""Answer verification for outcome rewards and evaluation: a verifier the policy cannot game.

The pipeline, cheapest first (``docs/verifier.md`` has the details):

1. rules in the calling process (:mod:`~oreal.verify.rules`, :mod:`~oreal.verify.extract`):
   truncation, size screens, boxed-answer extraction, empty/negated/hedged answers, and a fast
   path when the canonical answer string equals the canonical gold;
2. math-verify equivalence in a pool of worker processes run by a helper process of ours
   (:mod:`~oreal.verify.host`, :mod:`~oreal.verify.worker`, :mod:`~oreal.verify.equivalence`),
   each check under a budget of CPU seconds.

Public API::

    from oreal.verify import Verdict, Verifier, verify, verify_batch, extract_answer
"""

from oreal.verify.extract import MODES, extract_answer
from oreal.verify.pool import Verifier, verify, verify_batch
from oreal.verify.screens import Limits
from oreal.verify.verdict import REASONS, Verdict

__all__ = [
    "MODES",
    "REASONS",
    "Limits",
    "Verdict",
    "Verifier",
    "extract_answer",
    "verify",
    "verify_batch",
]
