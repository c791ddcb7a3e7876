"""Length terms for the reward, written as plain functions: TRL-style keyword arguments, one
float per completion. Use one next to the verifier with a method that learns from reward values:

    oreal train demo_grpo \
        'reward.functions=[verifier, {function: examples/length_penalty.py:overlong_penalty}]'

Each term is logged on its own (``reward/verifier``, ``reward/overlong_penalty``).

On the CPU demo both hurt (GRPO, 11 steps, `demo_grpo` with the term added; docs/training.md
has the runs): the untrained model earns no verifier reward in the first steps, so the length
term is the only signal. ``length_penalty`` collapsed the responses to 2 tokens by step 4
(held-out 0/64 -> 0/64); ``overlong_penalty``, which leaves responses under 32 tokens alone,
still taught it to answer with the prompt's example, ``\\boxed{7}.`` (0/64 -> 1/64). Add a
length term once the policy earns verifier reward (e.g. from a trained checkpoint), not from the
first step of a model that solves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

#: ``overlong_penalty``'s hard limit: set it to your ``rollout.max_new_tokens`` (the demo's 48).
MAX_NEW_TOKENS = 48
#: Its soft band: the last ``SOFT_CACHE`` tokens below the limit are penalised linearly.
SOFT_CACHE = 16


def length_penalty(
    completion_ids: Sequence[Sequence[int]], truncated: Sequence[bool], **kwargs: object
) -> list[float]:
    """-0.002 per response token, -0.1 more for a response cut at the length budget."""
    pairs = zip(completion_ids, truncated, strict=True)
    return [-0.002 * len(ids) - (0.1 if cut else 0.0) for ids, cut in pairs]


def overlong_penalty(
    completion_ids: Sequence[Sequence[int]], truncated: Sequence[bool], **kwargs: object
) -> list[float]:
    """DAPO's soft overlong punishment (Yu et al., arXiv 2503.14476, Sec. 3.4, Eq. 13), with
    L_max = ``MAX_NEW_TOKENS`` and L_cache = ``SOFT_CACHE``:

        0                                  if |y| <= L_max - L_cache
        ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
        -1                                 if |y| > L_max (here: cut at the budget)
    """
    soft_limit = MAX_NEW_TOKENS - SOFT_CACHE
    penalties = []
    for ids, cut in zip(completion_ids, truncated, strict=True):
        if cut or len(ids) > MAX_NEW_TOKENS:
            penalties.append(-1.0)
        elif len(ids) > soft_limit:
            penalties.append((soft_limit - len(ids)) / SOFT_CACHE)
        else:
            penalties.append(0.0)
    return penalties
