"""ThreadChooser: the decode loop runs with whichever thread count is fastest now, and torch's
setting is given back when the loop ends."""

from __future__ import annotations

import time

import pytest
import torch

from oreal.threads import ThreadChooser, candidate_thread_counts


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_candidates_halve_down_to_one():
    assert candidate_thread_counts(8) == [8, 4, 2, 1]
    assert candidate_thread_counts(6) == [6, 3, 1]
    assert candidate_thread_counts(2) == [2, 1]
    assert candidate_thread_counts(1) == [1]
    assert candidate_thread_counts(0) == [1]


def _step_slow_with(slow_threads: int) -> tuple[list[int], object]:
    seen: list[int] = []

    def step(tag: str = "") -> str:
        seen.append(torch.get_num_threads())
        # far apart, so a loaded machine cannot swap the order of the two
        time.sleep(0.15 if torch.get_num_threads() == slow_threads else 0.001)
        return tag

    return seen, step


@pytest.mark.parametrize("slow", [2, 1])
def test_the_faster_count_runs_after_the_trial(two_threads, slow):
    seen, step = _step_slow_with(slow)
    chooser = ThreadChooser([2, 1], trial_rounds=2, period=8)
    chooser.begin()
    assert [chooser.run(step, "x") for _ in range(8)] == ["x"] * 8
    fast = 1 if slow == 2 else 2
    assert seen[:4] == [2, 1, 2, 1]  # the trial alternates
    assert seen[4:] == [fast] * 4
    assert chooser.chosen == fast
    chooser.restore()
    assert torch.get_num_threads() == 2


def test_a_new_period_and_a_new_loop_retry_every_count(two_threads):
    seen, step = _step_slow_with(2)
    chooser = ThreadChooser([2, 1], trial_rounds=1, period=4)
    chooser.begin()
    for _ in range(6):
        chooser.run(step)
    assert seen == [2, 1, 1, 1, 2, 1]  # trial, chosen, trial again at step 4
    chooser.restore()
    seen.clear()
    chooser.begin()
    chooser.run(step)
    assert seen == [2]  # a new loop starts with a trial


def test_one_candidate_never_changes_threads(two_threads):
    seen, step = _step_slow_with(2)
    chooser = ThreadChooser([2])
    chooser.begin()
    for _ in range(5):
        chooser.run(step)
    assert seen == [2] * 5


def test_rejects_bad_schedules():
    with pytest.raises(ValueError):
        ThreadChooser([])
    with pytest.raises(ValueError):
        ThreadChooser([0])
    with pytest.raises(ValueError):
        ThreadChooser([4, 2, 1], trial_rounds=2, period=5)


def test_cli_sets_a_short_spin_unless_the_user_chose():
    from oreal.cli import configure_openmp

    environ: dict[str, str] = {}
    configure_openmp(environ)
    assert environ == {"GOMP_SPINCOUNT": "2000"}
    mine = {"GOMP_SPINCOUNT": "300000"}
    configure_openmp(mine)
    assert mine == {"GOMP_SPINCOUNT": "300000"}
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    configure_openmp(passive)
    assert passive == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_cli_bounds_onednn_kernel_cache_unless_the_user_chose():
    from oreal.cli import ONEDNN_PRIMITIVE_CACHE, configure_native_libraries

    environ: dict[str, str] = {}
    configure_native_libraries(environ)
    assert environ == {
        "GOMP_SPINCOUNT": "2000",
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY": ONEDNN_PRIMITIVE_CACHE,
    }
    mine = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "OMP_WAIT_POLICY": "PASSIVE"}
    configure_native_libraries(mine)
    assert mine == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "OMP_WAIT_POLICY": "PASSIVE"}
