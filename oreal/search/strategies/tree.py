"""Step-level tree search guided by a PRM: beam search and DVTS (search-and-learn's designs).

**Beam search** (the baseline of Puri et al., arXiv 2502.01618, §5; HF search-and-learn
``beam_search.py``). Budget N continuations per step, beam width M (4):

    start: N first steps sampled from the prompt
    each step: score every new continuation; finished ones (eos, \\boxed, budget, step cap)
      leave for the finished pool; the top max(1, N // M) live ones by aggregated score are
      kept, and N continuations are sampled from them, round robin, best first
    stop: when the pool holds N finished solutions or nothing is live
    return: the finished solution with the highest score

search-and-learn refills N beams the same way but runs until every beam of one step has finished
or 40 iterations have passed; stopping at N finished solutions keeps the compute near N
solutions (generated tokens are reported either way).

**DVTS** (diverse verifier tree search; search-and-learn ``diverse_verifier_tree_search.py``; see
Snell et al., arXiv 2408.03314): the budget is split into max(1, N // M) independent subtrees of
width N // subtrees. Each subtree expands its current node with ``width`` one-step continuations
and greedily moves to the best-scored one, until that one has finished. The best subtree leaf is
returned. Subtrees never compete, which keeps the N / M answers diverse.

With N = 1 both reduce to sampling one solution step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oreal.search.algorithms import best_index, top_k_indices
from oreal.search.strategies.base import SearchResult, SearchStrategy, SearchUnit, Trajectory

if TYPE_CHECKING:
    from oreal.rollout import SamplingParams

__all__ = ["DVTS", "BeamSearch"]


@dataclass
class _Beams:
    active: list[Trajectory] = field(default_factory=lambda: [Trajectory()])
    finished: list[Trajectory] = field(default_factory=list)
    children: list[Trajectory] = field(default_factory=list)
    done: bool = False


class BeamSearch(SearchStrategy):
    """PRM-guided beam search (module docstring)."""

    method = "beam_search"

    @property
    def kept(self) -> int:
        return max(1, self.budget // self.config.beam_width)

    def search(self, units: list[SearchUnit], params: SamplingParams) -> list[SearchResult]:
        n = self.budget
        states = [_Beams() for _ in units]
        step = 0
        while True:
            pairs = []
            for unit, state in zip(units, states, strict=True):
                if state.done:
                    continue
                state.children = [state.active[i % len(state.active)].copy() for i in range(n)]
                pairs += [(unit, child) for child in state.children]
            if not pairs:
                break
            step += 1
            self.propagate(pairs, params, key=f"step-{step}")
            self.score_trajectories(pairs)
            for unit, state in zip(units, states, strict=True):
                if state.done:
                    continue
                unit.stats.steps += 1
                state.finished += [c for c in state.children if not c.active]
                live = [c for c in state.children if c.active]
                if len(state.finished) >= n or not live:
                    state.done = True
                    continue
                keep = top_k_indices([c.weight for c in live], self.kept)
                state.active = [live[i] for i in keep]
        results = []
        for state in states:
            pool = state.finished or state.active
            best = pool[best_index([t.weight for t in pool])]
            results.append(SearchResult.of(best, self.config.separator, len(pool)))
        return results


class DVTS(SearchStrategy):
    """Diverse verifier tree search (module docstring)."""

    method = "dvts"

    @property
    def subtrees(self) -> int:
        return max(1, self.budget // self.config.beam_width)

    @property
    def width(self) -> int:
        return self.budget // self.subtrees

    def search(self, units: list[SearchUnit], params: SamplingParams) -> list[SearchResult]:
        leaves = [[Trajectory() for _ in range(self.subtrees)] for _ in units]
        step = 0
        while True:
            pairs, families = [], []
            for unit, row in zip(units, leaves, strict=True):
                for tree, leaf in enumerate(row):
                    if leaf.active:
                        children = [leaf.copy() for _ in range(self.width)]
                        families.append((row, tree, children))
                        pairs += [(unit, child) for child in children]
            if not pairs:
                break
            step += 1
            self.propagate(pairs, params, key=f"step-{step}")
            self.score_trajectories(pairs)
            for row, tree, children in families:
                row[tree] = children[best_index([c.weight for c in children])]
            for unit in {id(unit): unit for unit, _ in pairs}.values():
                unit.stats.steps += 1
        results = []
        for row in leaves:
            best = row[best_index([leaf.weight for leaf in row])]
            results.append(SearchResult.of(best, self.config.separator, len(row)))
        return results
