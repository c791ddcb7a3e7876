"""Global normalisation: any micro-batch split, packing or data-parallel layout gives the same step.

The "model" is a linear map W: features -> logits over a 7-token vocabulary, in float64 so the
comparison can be tight. For each loss configuration the full batch of 8 sequences (lengths 1-6)
is the reference; the same sequences are then split into micro-batches (1×8, 2×4, 4×2, and an
uneven shuffled packing with per-micro-batch padding), or over R emulated ranks whose gradients
are averaged. The summed loss, the accumulated gradient and the summed logged parts must match.
"""

from __future__ import annotations

import pytest
import torch

from oreal.algorithms import AlgorithmParams, LossNormalizers, algorithm_params, compute_policy_loss

B, T, D, V = 8, 6, 5, 7
gen = torch.Generator().manual_seed(0)
X = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
Y = torch.randint(0, V, (B, T), generator=gen)
LENGTHS = torch.tensor([1, 6, 3, 5, 2, 6, 4, 3])
MASK = torch.arange(T).unsqueeze(0) < LENGTHS.unsqueeze(1)
W0 = torch.randn(D, V, generator=gen, dtype=torch.float64)
W_OLD = W0 + 0.3 * torch.randn(D, V, generator=gen, dtype=torch.float64)  # ratios ≠ 1: clipping
W_REF = W0 + 0.2 * torch.randn(D, V, generator=gen, dtype=torch.float64)
ADV = torch.tensor([1.2, -0.4, 0.7, -1.5, 0.3, -0.2, 2.0, -0.9], dtype=torch.float64)
POSITIVE = ADV > 0
PASS_RATE = torch.tensor([0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.1, 0.1], dtype=torch.float64)
WEIGHTS = torch.rand(B, T, generator=gen, dtype=torch.float64)

CONFIGS = {
    "grpo_seq_mean_token_mean": algorithm_params("grpo", kl_coef=0.04, entropy_coef=0.001),
    "token_mean_dual_clip": algorithm_params("grpo", aggregation="token_mean", dual_clip=3.0,
                                             kl_coef=0.01, kl_estimator="k2"),
    "seq_mean_token_sum": algorithm_params("rloo", aggregation="seq_mean_token_sum", kl_coef=0.1),
    "dr_grpo": algorithm_params("dr_grpo", kl_coef=0.01, entropy_coef=0.01),
    "raft_sft": algorithm_params("raft", kl_coef=0.001),
    "raft_sft_dropped": algorithm_params("raft", rejected_rows="drop", entropy_coef=0.0),
    "raft_pp": algorithm_params("raft_pp"),
    "oreal_release": algorithm_params("oreal", entropy_coef=0.001),
    "oreal_paper": algorithm_params("oreal", form="paper", kl_target="ref"),
    "oreal_kl_over_neg": algorithm_params("oreal", kl_normalizer="neg", neg_weight="none"),
}  # fmt: skip


def _logprobs(weight: torch.Tensor, rows: torch.Tensor, width: int) -> torch.Tensor:
    logits = X[rows, :width] @ weight
    return torch.log_softmax(logits, -1).gather(-1, Y[rows, :width].unsqueeze(-1)).squeeze(-1)


def _micro_loss(
    params: AlgorithmParams, W: torch.Tensor, rows: torch.Tensor, norms: LossNormalizers
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    width = int(LENGTHS[rows].max())  # each micro-batch padded to its own longest sequence
    logits = X[rows, :width] @ W
    entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    return compute_policy_loss(
        params,
        logprobs=_logprobs(W, rows, width),
        old_logprobs=_logprobs(W_OLD, rows, width),
        ref_logprobs=_logprobs(W_REF, rows, width),
        entropy=entropy,
        advantages=ADV[rows],
        response_mask=MASK[rows, :width],
        token_weights=WEIGHTS[rows, :width],
        positive=POSITIVE[rows],
        pass_rate=PASS_RATE[rows],
        normalizers=norms,
    )


def _run(
    params: AlgorithmParams, ranks: list[list[torch.Tensor]]
) -> tuple[float, torch.Tensor, dict[str, float]]:
    """Loss, gradient (summed over micro-batches, averaged over ranks) and summed parts."""
    norms = LossNormalizers.from_masks(MASK, POSITIVE, max_len=T, dp_world_size=len(ranks))
    rank_grads, total, parts_sum = [], 0.0, {}
    for micro_batches in ranks:
        W = W0.clone().requires_grad_(True)
        for rows in micro_batches:
            loss, parts = _micro_loss(params, W, rows, norms)
            loss.backward()
            total += float(loss.detach()) / len(ranks)
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v)
        rank_grads.append(W.grad)
    return total, torch.stack(rank_grads).mean(0), parts_sum


def _split(rows: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(torch.split(rows, sizes))


ALL = torch.arange(B)
SHUFFLED = torch.tensor([5, 0, 7, 2, 6, 1, 3, 4])
LAYOUTS = {
    "1x8": [[ALL]],
    "2x4": [_split(ALL, [4, 4])],
    "4x2": [_split(ALL, [2, 2, 2, 2])],
    "shuffled_uneven": [_split(SHUFFLED, [3, 1, 4])],
    "dp2x2": [_split(SHUFFLED[:4], [1, 3]), _split(SHUFFLED[4:], [2, 2])],
    "dp4x1": [[SHUFFLED[2 * r : 2 * r + 2]] for r in range(4)],
    "dp2_uneven_ranks": [_split(SHUFFLED[:3], [1, 2]), _split(SHUFFLED[3:], [4, 1])],
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_split_invariance(config: str) -> None:
    params = CONFIGS[config]
    ref_loss, ref_grad, ref_parts = _run(params, LAYOUTS["1x8"])
    assert ref_grad.abs().sum() > 0
    for name, layout in LAYOUTS.items():
        loss, grad, parts = _run(params, layout)
        assert loss == pytest.approx(ref_loss, rel=1e-10, abs=1e-12), name
        torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12, msg=name)
        assert parts.keys() == ref_parts.keys()
        for k in parts:
            assert parts[k] == pytest.approx(ref_parts[k], rel=1e-10, abs=1e-12), (name, k)


def test_every_oreal_term_is_split_invariant() -> None:
    # Each term alone (the others zeroed) so one term's error cannot hide behind another's.
    terms = {
        "pos": algorithm_params("oreal", negative_factor=0.0, kl_coef=0.0),
        "neg": algorithm_params("oreal", positive_factor=0.0, kl_coef=0.0),
        "kl": algorithm_params("oreal", positive_factor=0.0, negative_factor=0.0),
    }
    for term, params in terms.items():
        _, ref_grad, _ = _run(params, LAYOUTS["1x8"])
        assert ref_grad.abs().sum() > 0, term
        for name in ("4x2", "shuffled_uneven", "dp2x2", "dp4x1"):
            _, grad, _ = _run(params, LAYOUTS[name])
            torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12, msg=term + name)


def test_local_mean_would_not_be_invariant() -> None:
    # Guard on the test itself: normalising by the micro-batch's own token count (what the
    # global counts avoid) changes the gradient, so the invariance tests above can fail.
    params = CONFIGS["token_mean_dual_clip"]
    _, ref_grad, _ = _run(params, LAYOUTS["1x8"])
    W = W0.clone().requires_grad_(True)
    for rows in _split(SHUFFLED, [3, 1, 4]):
        local = LossNormalizers.from_masks(MASK[rows], POSITIVE[rows], max_len=T)
        loss, _ = _micro_loss(params, W, rows, local)
        (loss / 3).backward()
    assert not torch.allclose(W.grad, ref_grad, rtol=1e-4)


def test_normalizer_counts_and_roundtrip() -> None:
    n = LossNormalizers.from_masks(MASK, POSITIVE, max_len=T, dp_world_size=2)
    assert n.num_tokens == 30 and n.num_seqs == 8
    assert n.num_pos_tokens == 1 + 3 + 2 + 4 and n.num_neg_tokens == 6 + 5 + 6 + 3
    # Micro-batch masks trimmed to their own longest sequence (rows 0, 2, 4 have lengths
    # 1, 3, 2 -> width 3) count the same as the full-width mask.
    rest = torch.tensor([1, 3, 5, 6, 7])
    parts = LossNormalizers.from_masks(
        [MASK[[0, 2, 4], :3], MASK[rest]],
        [POSITIVE[[0, 2, 4]], POSITIVE[rest]],
        max_len=T,
        dp_world_size=2,
    )
    assert parts == n
    rebuilt = LossNormalizers.from_tensor(n.to_tensor() * 1, max_len=T, dp_world_size=2)
    assert rebuilt == n
