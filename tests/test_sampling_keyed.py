"""Keyed sampler: Philox known answers, keyed uniforms, exactness in distribution (chi-square),
transformers' top-k / top-p semantics and the returned log-probs."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from oreal.rollout.sampling import filter_probs, keyed_uniforms, philox4x32_10, sample_from_logits

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4], key[2] -> output[4].
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]

#: Upper 0.1% points of the chi-square distribution (df -> critical value).
CHI2_999 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 6: 22.458, 7: 24.322}


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_random123_known_answers(counter, key, expected):
    words = philox4x32_10([torch.tensor([c]) for c in counter], key)
    assert tuple(int(w) for w in words) == expected


def test_keyed_uniforms_depend_only_on_their_key():
    keys = torch.tensor([5, 5, 9, 2**40 + 3])
    samples = torch.tensor([0, 1, 0, 7])
    grid = keyed_uniforms(11, keys, samples, 6)
    assert grid.shape == (4, 6) and grid.dtype == torch.float64
    assert bool(((grid >= 0) & (grid < 1)).all())
    for row in range(4):  # the same numbers computed alone, and for a subset of steps
        alone = keyed_uniforms(11, keys[row : row + 1], samples[row : row + 1], 6)
        assert torch.equal(alone[0], grid[row])
        later = keyed_uniforms(11, keys[row : row + 1], samples[row : row + 1], torch.tensor([4]))
        assert later.item() == grid[row, 4].item()
    assert len({round(v, 12) for v in grid.flatten().tolist()}) == grid.numel()  # all distinct
    assert not torch.equal(keyed_uniforms(12, keys, samples, 6), grid)  # the seed matters
    with pytest.raises(ValueError):
        keyed_uniforms(-1, keys, samples, 6)


def _draw(logits: torch.Tensor, n: int, **params: float) -> torch.Tensor:
    """``n`` keyed draws from one distribution (rows differ only in their key)."""
    uniforms = keyed_uniforms(3, torch.arange(n), torch.zeros(n, dtype=torch.long), 1)[:, 0]
    tokens, _ = sample_from_logits(logits.expand(n, -1), uniforms, **params)
    return tokens


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampler_is_exact_in_distribution(temperature):
    logits = torch.tensor([[2.0, 0.5, -1.0, 1.2, 0.0, 1.9]])
    n = 40_000
    tokens = _draw(logits, n, temperature=temperature)
    counts = torch.bincount(tokens, minlength=6).double()
    probs = torch.softmax(logits[0].double() / temperature, -1)
    assert _chi_square(counts, probs) < CHI2_999[5]
    # A biased sampler fails the same test: e.g. the softmax at a slightly different temperature.
    wrong = torch.softmax(logits[0].double() / (temperature * 1.1), -1)
    assert _chi_square(counts, wrong) > CHI2_999[5]


def test_sampler_is_exact_across_vocabulary_blocks():
    # 600 entries: two full 256-entry blocks and a padded one; mass sits on block edges.
    logits = torch.full((1, 600), -30.0)
    heavy = torch.tensor([0, 255, 256, 511, 512, 599])
    logits[0, heavy] = torch.tensor([1.0, 0.2, 0.7, -0.3, 0.4, 1.5])
    n = 40_000
    tokens = _draw(logits, n, temperature=1.0)
    assert set(tokens.unique().tolist()) <= set(heavy.tolist())
    counts = torch.stack([(tokens == h).sum() for h in heavy]).double()
    probs = torch.softmax(logits[0].double(), -1)[heavy]
    assert _chi_square(counts, probs / probs.sum()) < CHI2_999[5]


@pytest.mark.parametrize(("top_k", "top_p", "kept_count"), [(3, 1.0, 3), (0, 0.7, 3), (4, 0.95, 4)])
def test_sampler_exact_after_top_k_top_p(top_k, top_p, kept_count):
    logits = torch.tensor([[2.0, 0.5, -1.0, 1.2, 0.0, 1.9, 0.8, -0.2]])
    n = 40_000
    tokens = _draw(logits, n, temperature=0.8, top_k=top_k, top_p=top_p)
    weights, _ = filter_probs(logits, 0.8, top_k, top_p)
    kept = weights[0] > 0
    assert int(kept.sum()) == kept_count
    assert set(tokens.unique().tolist()) == set(kept.nonzero().flatten().tolist())
    counts = torch.bincount(tokens, minlength=8).double()[kept]
    probs = weights[0, kept].double() / weights[0, kept].double().sum()
    assert _chi_square(counts, probs) < CHI2_999[int(kept.sum()) - 1]


@pytest.mark.parametrize(("top_k", "top_p"), [(5, 1.0), (0, 0.9), (0, 0.3), (40, 0.95), (1, 1.0)])
def test_filters_keep_what_transformers_keeps(top_k, top_p):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 1000, generator=generator) * 3
    weights, log_total = filter_probs(logits, 0.7, top_k, top_p)
    scores = logits / 0.7
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    assert torch.equal(weights > 0, torch.isfinite(scores))
    expected = torch.log_softmax(scores, -1)
    ours = weights.log() - log_total
    kept = weights > 0
    torch.testing.assert_close(ours[kept], expected[kept], rtol=0, atol=1e-5)


def test_logprobs_are_those_of_the_sampling_distribution():
    logits = torch.randn(32, 300, generator=torch.Generator().manual_seed(1))
    uniforms = keyed_uniforms(0, torch.arange(32), torch.zeros(32, dtype=torch.long), 1)[:, 0]
    tokens, logprobs = sample_from_logits(logits, uniforms, temperature=0.5, top_k=20)
    expected = torch.log_softmax(TopKLogitsWarper(20)(None, logits / 0.5), -1)
    torch.testing.assert_close(logprobs, expected.gather(1, tokens[:, None])[:, 0])
    greedy, greedy_lp = sample_from_logits(logits, None, temperature=0.0)
    assert torch.equal(greedy, logits.argmax(-1))
    torch.testing.assert_close(greedy_lp, torch.log_softmax(logits, -1).max(-1).values)


def test_each_row_uses_its_own_uniform():
    logits = torch.zeros(4, 10)  # uniform distribution: token = floor(10 u)
    uniforms = torch.tensor([0.0, 0.15, 0.55, 0.999], dtype=torch.float64)
    tokens, logprobs = sample_from_logits(logits, uniforms, temperature=1.0)
    assert tokens.tolist() == [0, 1, 5, 9]
    torch.testing.assert_close(logprobs, torch.full((4,), -torch.log(torch.tensor(10.0)).item()))
    with pytest.raises(ValueError):
        sample_from_logits(logits, None, temperature=1.0)
