"""The step record: what one training step knows about its rollouts, as padded tensors.

(Being rebuilt: the row-per-rollout record lands here next.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["TrainTensors", "pad_rollouts"]


@dataclass
class TrainTensors:
    """Right-padded training inputs for ``token_logprobs`` / loss computation.

    ``response_mask [B, T]`` marks response tokens inside ``input_ids``; ``loss_mask [B, R]`` is
    the same information in the compact layout of ``token_logprobs`` outputs (R = longest
    response); ``response_lengths [B]`` counts response tokens per row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    loss_mask: torch.Tensor
    response_lengths: torch.Tensor

    def to(self, device: str | torch.device) -> TrainTensors:
        return TrainTensors(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.response_mask.to(device),
            self.loss_mask.to(device),
            self.response_lengths.to(device),
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, rows: slice | torch.Tensor | list[int]) -> TrainTensors:
        """Select rows (micro-batching); columns that are padding in every picked row are cut."""
        attention = self.attention_mask[rows]
        lengths = self.response_lengths[rows]
        used = int(attention.sum(dim=1).max().item()) if attention.numel() else 0
        width = int(lengths.max().item()) if lengths.numel() else 0
        return TrainTensors(
            self.input_ids[rows][:, :used],
            attention[:, :used],
            self.response_mask[rows][:, :used],
            self.loss_mask[rows][:, :width],
            lengths,
        )


def pad_rollouts(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    *,
    device: str | torch.device | None = None,
) -> TrainTensors:
    """Turn ``(prompt_ids, response_ids)`` pairs into right-padded training tensors.

    Right padding keeps position ids equal to ``arange`` for every row, so a plain forward pass
    (no ``position_ids``) scores the tokens exactly as they were generated.
    """
    if not pairs:
        raise ValueError("no rollouts to pad")
    lengths = [len(p) + len(r) for p, r in pairs]
    batch, width = len(pairs), max(lengths)
    resp_width = max(len(r) for _, r in pairs)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    response_mask = torch.zeros((batch, width), dtype=torch.bool)
    loss_mask = torch.zeros((batch, resp_width), dtype=torch.bool)
    for row, (prompt, response) in enumerate(pairs):
        if not prompt:
            raise ValueError(f"rollout {row} has an empty prompt; nothing predicts its first token")
        n_p, n_r = len(prompt), len(response)
        input_ids[row, : n_p + n_r] = torch.tensor([*prompt, *response], dtype=torch.long)
        attention_mask[row, : n_p + n_r] = 1
        response_mask[row, n_p : n_p + n_r] = True
        loss_mask[row, :n_r] = True
    response_lengths = torch.tensor([len(r) for _, r in pairs], dtype=torch.long)
    out = TrainTensors(input_ids, attention_mask, response_mask, loss_mask, response_lengths)
    return out.to(device) if device is not None else out
