"""Particle filtering and particle Gibbs (Puri et al., "Rollout Roulette", arXiv 2502.01618).

The LLM is the transition kernel of a state-space model and the PRM its emission likelihood;
instead of searching for the mode of the PRM-weighted distribution over solutions, sample from it
(§3; algorithms.md §6.1; the original code ``src/sal/search/particle_gibbs.py`` and its_hub
``particle_gibbs.py``). With N particles (N is the budget):

    1. start N empty particles;
    2. propagate: every live particle generates one step (temperature 0.8 in the paper's runs);
    3. weight: score every new partial solution, r = aggregated PRM score (``last`` in the
       original code);
    4. resample, while any particle is live: N draws with replacement from *all* particles,
       finished ones included with their last weight (the original's ``resample_inactive``), with
       P(i) = softmax(logit(r) / τ)_i, multinomially or systematically;
    5. repeat 2-4 until every particle has finished (eos, ``\\boxed``, token budget, step cap);
    6. return the particle with the highest final weight (its_hub's default selection).

**Particle Gibbs** (§3.2; its_hub ``ParticleGibbs``): the budget N is split into S sweeps of
P = N / S particles (P >= 2). After a sweep, one reference particle is drawn ∝ softmax(logit(r)/τ)
from its final particles and kept. The next sweep runs P - 1 new particles; at its step t the
reference competes in resampling with its prefix of t steps and the weight it had after t steps
(its final weight once it is shorter), and a resampled copy of it continues from that prefix. The
reference itself is retained unchanged. The answer is the best of the last sweep's particles and
its reference. (The original code weights the reference with its score one step ahead; this
follows its_hub, which compares equal depths.)

Draws are keyed by (config seed, prompt, sample, sweep, step), so they do not depend on what else
is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oreal.search.algorithms import best_index, resample, resampling_weights
from oreal.search.strategies.base import SearchResult, SearchStrategy, SearchUnit, Trajectory

if TYPE_CHECKING:
    from oreal.rollout import SamplingParams

__all__ = ["ParticleFiltering", "ParticleGibbs"]


@dataclass
class _Swarm:
    particles: list[Trajectory] = field(default_factory=list)
    reference: Trajectory | None = None

    def final_pool(self) -> list[Trajectory]:
        return self.particles + ([self.reference] if self.reference is not None else [])


class ParticleFiltering(SearchStrategy):
    """Particle filtering with N particles (module docstring)."""

    method = "particle_filtering"

    @property
    def particles_per_sweep(self) -> int:
        return self.budget

    @property
    def sweeps(self) -> int:
        return 1

    def search(self, units: list[SearchUnit], params: SamplingParams) -> list[SearchResult]:
        swarms = [_Swarm() for _ in units]
        for sweep in range(self.sweeps):
            for unit, swarm in zip(units, swarms, strict=True):
                if sweep > 0:
                    swarm.reference = self._draw_reference(unit, swarm, sweep)
                free = self.particles_per_sweep - (swarm.reference is not None)
                swarm.particles = [Trajectory() for _ in range(free)]
            self._sweep(units, swarms, params, sweep)
        results = []
        for swarm in swarms:
            pool = swarm.final_pool()
            best = pool[best_index([p.weight for p in pool])]
            result = SearchResult.of(best, self.config.separator, len(pool))
            result.pool = pool
            results.append(result)
        return results

    def _sweep(
        self, units: list[SearchUnit], swarms: list[_Swarm], params: SamplingParams, sweep: int
    ) -> None:
        step = 0
        while True:
            pairs = [
                (unit, p)
                for unit, swarm in zip(units, swarms, strict=True)
                for p in swarm.particles
                if p.active
            ]
            if not pairs:
                return
            step += 1
            self.propagate(pairs, params, key=f"sweep-{sweep}-step-{step}")
            self.score_trajectories(pairs)
            stepped = {id(unit) for unit, _ in pairs}
            for unit, swarm in zip(units, swarms, strict=True):
                if id(unit) in stepped:
                    unit.stats.steps += 1
                if any(p.active for p in swarm.particles):
                    swarm.particles = self._resample(unit, swarm, sweep, step)

    def _resample(self, unit: SearchUnit, swarm: _Swarm, sweep: int, step: int) -> list[Trajectory]:
        pool = list(swarm.particles)
        weights = [p.weight for p in pool]
        if swarm.reference is not None:
            pool.append(swarm.reference.truncated(step))
            weights.append(swarm.reference.weight_at(step))
        probabilities = resampling_weights(weights, self.config.tau)
        rng = unit.rng(self.config.seed, "resample", sweep, step)
        drawn = resample(probabilities, len(swarm.particles), rng, self.config.resampling)
        return [pool[i].copy() for i in drawn]

    def _draw_reference(self, unit: SearchUnit, swarm: _Swarm, sweep: int) -> Trajectory:
        pool = swarm.final_pool()
        probabilities = resampling_weights([p.weight for p in pool], self.config.tau)
        rng = unit.rng(self.config.seed, "reference", sweep)
        return pool[resample(probabilities, 1, rng, "multinomial")[0]].copy()


class ParticleGibbs(ParticleFiltering):
    """Particle Gibbs: S sweeps of N / S particles with a retained reference (module docstring)."""

    method = "particle_gibbs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_gibbs_budget(self.budget, self.config.sweeps)

    @property
    def particles_per_sweep(self) -> int:
        return self.budget // self.config.sweeps

    @property
    def sweeps(self) -> int:
        return self.config.sweeps


def check_gibbs_budget(budget: int, sweeps: int) -> None:
    """Particle Gibbs needs N = S · P with P >= 2 (a sweep is a reference plus new particles)."""
    if budget % sweeps or budget // sweeps < 2:
        raise ValueError(
            f"particle_gibbs with {sweeps} sweeps needs a budget that is a multiple of {sweeps} "
            f"and at least {2 * sweeps}, got {budget}"
        )
