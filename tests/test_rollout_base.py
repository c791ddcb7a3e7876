"""pad_rollouts / TrainBatch: the RolloutBatch -> training tensors step."""

from __future__ import annotations

import pytest
import torch

from oreal.batch import pad_rollouts
from oreal.rollout import GenerationOutput, RolloutBatch

PAD = 9


def test_pad_rollouts_masks_and_right_padding():
    pairs = [([1, 2, 3], [4, 5]), ([6], [7, 8, 8, 2]), ([1, 1], [])]  # widest row: 5
    t = pad_rollouts(pairs, PAD)
    assert t.input_ids.tolist() == [
        [1, 2, 3, 4, 5],
        [6, 7, 8, 8, 2],
        [1, 1, PAD, PAD, PAD],
    ]
    assert t.attention_mask.tolist() == [[1] * 5, [1] * 5, [1, 1, 0, 0, 0]]
    assert t.response_mask.int().tolist() == [
        [0, 0, 0, 1, 1],
        [0, 1, 1, 1, 1],
        [0, 0, 0, 0, 0],
    ]
    assert t.loss_mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert t.response_lengths.tolist() == [2, 4, 0]
    assert t.input_ids.dtype == torch.long and t.response_mask.dtype == torch.bool


def test_row_selection_trims_padding_columns():
    t = pad_rollouts([([1, 2, 3], [4, 5, 6]), ([6], [7])], PAD)
    sub = t[[1]]
    assert sub.input_ids.tolist() == [[6, 7]]
    assert sub.loss_mask.tolist() == [[True]]
    assert len(t) == 2 and len(sub) == 1
    assert t[0:2].input_ids.shape == t.input_ids.shape


def test_pad_rollouts_rejects_empty_prompt_and_batch():
    with pytest.raises(ValueError):
        pad_rollouts([([], [1, 2])], PAD)
    with pytest.raises(ValueError):
        pad_rollouts([], PAD)


def test_rollout_batch_group_index_and_padding():
    outs = [
        GenerationOutput(g, i, f"p{g}", [g + 1, 5], [7] * (i + 1), "x", "eos")
        for g in range(2)
        for i in range(3)
    ]
    batch = RolloutBatch(outs, num_prompts=2, k=3)
    assert batch.group_index == [0, 0, 0, 1, 1, 1]
    t = pad_rollouts([(o.prompt_ids, o.response_ids) for o in batch], PAD)
    assert t.response_lengths.tolist() == [1, 2, 3, 1, 2, 3]
    assert t.input_ids[3].tolist() == [2, 5, 7, PAD, PAD]
    assert not any(o.truncated for o in batch)
