"""pass@k against brute-force enumeration; maj@k grouping, ties and abstentions by hand."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from oreal.eval.metrics import assign_groups, majority_vote, normalize_answer, pass_at_k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of the n samples that contain at least one correct sample."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10])
def test_pass_at_k_equals_enumeration_of_all_subsets(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (
                n,
                c,
                k,
            )


def test_pass_at_k_special_values() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # n - c = 4 < k: every 5-subset holds a correct one
    assert pass_at_k(1, 1, 1) == 1.0
    # Large n: the binomials are astronomically large, the product form is still exact enough.
    exact = 1 - Fraction(math.comb(997, 100), math.comb(1000, 100))
    assert pass_at_k(1000, 3, 100) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 1, 5), (4, 5, 1), (4, -1, 1), (0, 0, 1), (4, 1, 0)])
def test_pass_at_k_rejects_impossible_inputs(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def as_fraction(text: str) -> Fraction | None:
    text = text.replace("\\frac{", "").replace("}{", "/").replace("}", "")
    try:
        return Fraction(text)
    except ValueError:
        return None


def numeric_equivalent(a: str, b: str) -> bool:
    """A stand-in for Verifier.equivalent: equal as rational numbers."""
    fa, fb = as_fraction(a), as_fraction(b)
    return fa is not None and fa == fb


def test_equivalent_forms_are_one_vote_group() -> None:
    answers = ["1/2", "0.5", "3", None, "3", "\\frac{1}{2}"]
    groups = assign_groups(answers, numeric_equivalent)
    assert groups == [0, 0, 1, None, 1, 0]
    assert majority_vote(groups) == 0  # 1/2 has three votes, 3 has two
    # Without the equivalence every spelling would be its own group and 3 would win.
    split = assign_groups(answers, lambda a, b: False)
    assert majority_vote(split) == 2


def test_ties_go_to_the_group_seen_first() -> None:
    groups = assign_groups(["3", "1/2", "0.5", "3"], numeric_equivalent)
    assert groups == [0, 1, 1, 0]
    assert majority_vote(groups) == 0  # 2 votes each: "3" appeared first
    assert majority_vote(groups, k=3) == 1  # among the first three, 1/2 leads 2-1
    assert majority_vote(assign_groups(["7", "8"], numeric_equivalent)) == 0
    assert majority_vote(assign_groups(["8", "7"], numeric_equivalent)) == 0


def test_samples_without_an_answer_cast_no_vote() -> None:
    assert majority_vote(assign_groups([None, None], numeric_equivalent)) is None
    groups = assign_groups([None, "", "5", None], numeric_equivalent)
    assert groups == [None, None, 0, None]
    assert majority_vote(groups) == 2
    assert majority_vote(groups, k=2) is None


def test_verdicts_replace_comparisons() -> None:
    calls: list[tuple[str, str]] = []

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return numeric_equivalent(a, b)

    answers = ["0.5", "4", "1/2", "4.0", "9"]
    correct = [True, False, True, False, False]
    groups = assign_groups(answers, spy, correct)
    assert groups == [0, 1, 0, 1, 2]
    # Correct answers join without a call; only wrong answers are compared, among themselves.
    assert all(a in ("4", "4.0", "9") and b in ("4", "4.0", "9") for a, b in calls)
    # Same spelling but different verdicts (e.g. one verification timed out): never one group.
    assert assign_groups(["2", "2"], spy, [True, False]) == [0, 1]


def test_groups_of_a_prefix_are_a_prefix_of_the_groups() -> None:
    answers = ["2", "1/2", None, "0.5", "2.0", "7", "1/2", "14/7"]
    full = assign_groups(answers, numeric_equivalent)
    for k in range(1, len(answers) + 1):
        assert assign_groups(answers[:k], numeric_equivalent) == full[:k]


def test_normalize_answer_only_removes_noise() -> None:
    assert normalize_answer("\\dfrac{1}{2}") == normalize_answer("\\frac{1}{2}")
    assert normalize_answer("$ 5 $.") == "5"
    assert normalize_answer("\\left( 1, 2 \\right)") == "(1,2)"
    assert normalize_answer("90^\\circ") == "90"
    assert normalize_answer("12") != normalize_answer("1.2")
