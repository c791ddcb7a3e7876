"""oreal's verifier as OpenRLHF's reward function file (``--reward.remote_url FILE.py``).

OpenRLHF loads ``reward_func`` from the file and calls ``reward_func(queries, prompts, labels)``
(from a thread, one sample at a time in its single-turn executor). ``queries`` are the decoded
prompt + response (special tokens included), ``labels`` the gold answers. It returns OpenRLHF's
dict: ``rewards`` (used for advantages), ``scores`` (in [0, 1], used for dynamic filtering) and
``extra_logs`` (scalars, logged)::

    --reward.remote_url $(python -c "import oreal.integrations.openrlhf as m; print(m.__file__)")

For lenient mode or another timeout, point OpenRLHF at a two-line file of yours::

    from oreal.integrations.openrlhf import make_reward_func
    reward_func = make_reward_func(mode="lenient")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from oreal.integrations._common import judge, reward
from oreal.verify import Verifier


def response_of(query: str, prompt: Any) -> str:
    """The response part of a decoded query: what follows the prompt (which may come after a
    BOS token); the whole query when the prompt is not found in it."""
    if isinstance(prompt, str) and prompt:
        start = query.find(prompt)
        if start >= 0:
            return query[start + len(prompt) :]
    return query


def make_reward_func(
    *, mode: str = "strict", timeout: float = 5.0, verifier: Verifier | None = None
) -> Callable[..., dict[str, Any]]:
    """An OpenRLHF ``reward_func`` with this mode and timeout (or your own ``verifier``)."""

    def reward_func(
        queries: Sequence[str], prompts: Sequence[Any], labels: Sequence[Any], **kwargs: Any
    ) -> dict[str, Any]:
        import torch

        if not len(queries) == len(prompts) == len(labels):
            raise ValueError(
                f"{len(queries)} queries, {len(prompts)} prompts and {len(labels)} labels"
            )
        responses = [response_of(q, p) for q, p in zip(queries, prompts, strict=True)]
        verdicts = judge(labels, responses, mode=mode, timeout=timeout, verifier=verifier)
        rewards = torch.tensor([reward(v) for v in verdicts], dtype=torch.float32)
        return {
            "rewards": rewards,
            "scores": rewards.clone(),
            "extra_logs": {"oreal_accuracy": rewards.mean() if len(rewards) else rewards.sum()},
        }

    return reward_func


reward_func = make_reward_func()
"""The default: strict mode (final ``\\boxed{}``), the process-wide shared verifier."""
