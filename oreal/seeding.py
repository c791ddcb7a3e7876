"""Randomness keyed by what it is for, never by the order in which work happens.

A draw is a pure function of its key: the run seed, a purpose, and the indices that name the
thing drawn for (step, prompt, sample, ...). Then a run draws the same numbers on one rank or
eight, with any batch size or micro-batch split, resumed or not, and nothing about random
number generator state needs to be checkpointed.

Keys go through NumPy's ``SeedSequence`` (a hash of an integer list designed for exactly
this: distinct keys give independent streams), so there is no home-made hash to trust.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

__all__ = ["Purpose", "derive_seed", "keyed_uniforms"]


class Purpose(IntEnum):
    """What a draw is for: part of every key, so two purposes never share a stream."""

    DATA_ORDER = 1  # the per-epoch shuffle of the training problems
    SELECTION = 2  # OREAL's 1+1 pick of a correct and a wrong rollout per group
    SAMPLING = 3  # token sampling (the rollout backends)
    TRAIN_STEP = 4  # torch's global RNG during a step's forward/backward (dropout)
    INIT = 5  # new weights a run creates (LoRA adapters), the same in every run of a seed


def derive_seed(seed: int, purpose: Purpose, *indices: int) -> int:
    """A 63-bit seed for ``(seed, purpose, *indices)``; any change of the key changes it."""
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, int(purpose)]
    words = np.random.SeedSequence([*entropy, *(int(i) for i in indices)]).generate_state(2)
    return int(words[0]) << 31 ^ int(words[1])


def keyed_uniforms(
    seed: int, purpose: Purpose, step: int, groups: list[int], samples: list[int]
) -> torch.Tensor:
    """One float64 in [0, 1) per row, keyed by (seed, purpose, step, group, sample)."""
    if len(groups) != len(samples):
        raise ValueError(f"{len(groups)} groups vs {len(samples)} samples")
    values = [
        np.random.Generator(np.random.PCG64(derive_seed(seed, purpose, step, g, i))).random()
        for g, i in zip(groups, samples, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float64)
