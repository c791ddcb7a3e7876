"""What a backend's per-token log-probs must equal: the model's full forward, by hand."""

from __future__ import annotations

import torch

from oreal.rollout import GenerationOutput


def sampled_token_logprobs(
    model: torch.nn.Module, output: GenerationOutput, temperature: float
) -> torch.Tensor:
    """log softmax(logits / T) of each response token of ``output``, from one unbatched forward
    of its prompt + response."""
    prompt, response = list(output.prompt_ids), list(output.response_ids)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0].float()
    start = len(prompt) - 1
    scores = torch.log_softmax(logits[start : start + len(response)] / temperature, -1)
    return scores.gather(1, torch.tensor(response)[:, None])[:, 0]
