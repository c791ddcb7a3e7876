"""Outcome-reward advantage estimators: one scalar per sequence, from the rewards of its group.

Every estimator is registered by name (``@register_estimator``) and has the signature
``fn(rewards, group_ids, **params) -> AdvantageResult``:

- ``rewards``: float ``[B]``, one outcome reward per rollout, already on the scale the method
  expects (see ``REWARD_SCALES`` and :func:`rewards_from_correct`, the one place where a bool
  verdict becomes a number).
- ``group_ids``: long ``[B]``; rollouts of the same prompt share an id. Ids need not be
  contiguous or sorted.

The advantage is sequence level; the loss broadcasts it to the response tokens. ``keep`` says
which sequences the method selects. What happens to the others is the algorithm's
``rejected_rows`` parameter where it has one (``"count"``: they stay in the step with
advantage 0, in the token denominator and the KL/entropy terms, as the authors' code does;
``"drop"``: removed before the global normalisers are counted); OREAL's 1+1 filter drops.

"Correct" always means ``r > 0``, which is right on both scales ({0,1} and {-1,+1}).
Baselines (GRPO, Dr.GRPO, RLOO) are computed on the full group, before any filtering
(a leave-one-out baseline must see every member). Formulas and defaults: docs/algorithms.md.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from oreal.algorithms.registry import get_estimator, register_estimator

RewardScale = Literal["01", "pm1"]
REWARD_SCALES: tuple[str, ...] = ("01", "pm1")


def rewards_from_correct(correct: Tensor, scale: RewardScale) -> Tensor:
    """Map a bool verdict tensor to rewards: ``"01"`` -> {0, 1}, ``"pm1"`` -> {-1, +1}.

    The scale matters: it doubles every baseline advantage (RLOO, Dr.GRPO), and it decides
    whether raw-reward methods see wrong answers at all (Reinforce-Rej on {0,1} gives them zero
    weight). Each registry entry declares the scale of its paper (docs/algorithms.md).
    """
    correct = correct.bool()
    if scale == "01":
        return correct.float()
    if scale == "pm1":
        return correct.float() * 2.0 - 1.0
    raise ValueError(f"unknown reward scale {scale!r}; expected one of {REWARD_SCALES}")


def check_reward_scale(rewards: Tensor, scale: RewardScale) -> None:
    """Raise if ``rewards`` holds a value outside the binary ``scale`` (catches 0/1 fed to ±1)."""
    allowed = (0.0, 1.0) if scale == "01" else (-1.0, 1.0)
    ok = (rewards == allowed[0]) | (rewards == allowed[1])
    if not bool(ok.all()):
        bad = sorted({float(v) for v in rewards[~ok].tolist()})[:5]
        raise ValueError(f"rewards {bad} are not on the {scale!r} scale {allowed}")


@dataclass(frozen=True)
class AdvantageResult:
    """What an estimator hands to the loss; every field is ``[B]`` in the input order.

    - ``advantages``: float sequence-level advantage (0 for sequences with ``keep`` False).
    - ``keep``: bool, the sequence enters the loss.
    - ``positive``: bool, the sequence was judged correct (``r > 0``); OREAL's split.
    - ``pass_rate``: float, p = c/K of the sequence's group (all K members, before filtering);
      OREAL's paper form shapes negatives by (1 - p), and it is a useful log.
    """

    advantages: Tensor
    keep: Tensor
    positive: Tensor
    pass_rate: Tensor


# --------------------------------------------------------------------------- group statistics


def _groups(group_ids: Tensor) -> tuple[Tensor, int]:
    """Dense group index ``[B]`` in 0..G-1 and G, whatever the ids look like."""
    if group_ids.dim() != 1:
        raise ValueError(f"group_ids must be 1-D, got shape {tuple(group_ids.shape)}")
    _, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, (int(inverse.max()) + 1 if inverse.numel() else 0)


def _group_sum(x: Tensor, index: Tensor, num_groups: int) -> Tensor:
    return torch.zeros(num_groups, dtype=x.dtype, device=x.device).index_add_(0, index, x)


def _group_mean_count(rewards: Tensor, index: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Per-sequence group mean and group size K (both ``[B]``, float)."""
    ones = torch.ones_like(rewards)
    count = _group_sum(ones, index, num_groups)
    mean = _group_sum(rewards, index, num_groups) / count
    return mean[index], count[index]


def _require_groups_of_two(count: Tensor, method: str) -> None:
    """A group baseline needs K >= 2 (RLOO divides by K - 1; a 1-sample std is undefined)."""
    if bool((count < 2).any()):
        raise ValueError(f"{method}: every group needs at least 2 rollouts (found a group of 1)")


def _leave_one_out(r: Tensor, index: Tensor, num_groups: int, method: str) -> tuple[Tensor, Tensor]:
    """RLOO advantage (K/(K-1))·(r - mean_g r) and the group size K, per sequence."""
    mean, count = _group_mean_count(r, index, num_groups)
    _require_groups_of_two(count, method)
    return count / (count - 1) * (r - mean), count


def _all_equal(rewards: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Per-sequence flag: every reward of the group is exactly equal (no std threshold)."""
    lo = torch.full((num_groups,), float("inf"), dtype=rewards.dtype, device=rewards.device)
    hi = torch.full((num_groups,), float("-inf"), dtype=rewards.dtype, device=rewards.device)
    lo = lo.scatter_reduce(0, index, rewards, reduce="amin")
    hi = hi.scatter_reduce(0, index, rewards, reduce="amax")
    return (lo == hi)[index]


def _result(
    rewards: Tensor, index: Tensor, num_groups: int, advantages: Tensor, keep: Tensor
) -> AdvantageResult:
    positive = rewards > 0
    pass_rate, _ = _group_mean_count(positive.to(rewards.dtype), index, num_groups)
    return AdvantageResult(
        advantages=torch.where(keep, advantages, torch.zeros_like(advantages)),
        keep=keep,
        positive=positive,
        pass_rate=pass_rate,
    )


def _prepare(rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, int]:
    """Float rewards, dense group index and group count; shapes checked once."""
    if rewards.shape != group_ids.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} vs group_ids {tuple(group_ids.shape)}")
    r = rewards if rewards.is_floating_point() else rewards.float()
    index, num_groups = _groups(group_ids.to(r.device))
    return r, index, num_groups


# --------------------------------------------------------------------------- baseline methods


@register_estimator("grpo")
@torch.no_grad()
def grpo(rewards: Tensor, group_ids: Tensor, *, eps: float = 1e-6) -> AdvantageResult:
    """GRPO z-score: A_i = (r_i - mean_g r) / (std_g r + eps).

    Shao et al., DeepSeekMath, arXiv 2402.03300, §4.1.2 (outcome supervision). The std is the
    *unbiased* (Bessel, divide by K - 1) sample std, as ``torch.std`` in verl's
    ``compute_grpo_outcome_advantage``; ``eps`` = 1e-6 is verl's default (OREAL's config option
    uses 1e-8). The statistics are taken in float64, and a group whose rewards are all equal
    gets A = 0 exactly (in float32, r - mean can be a rounding residue that eps would blow up
    to |A| ~ 0.2). Reward scale: {0,1} (invariant to the scale up to eps). Keeps every sequence.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    r64 = r.double()
    mean, count = _group_mean_count(r64, index, num_groups)
    _require_groups_of_two(count, "grpo")
    var = _group_sum((r64 - mean) ** 2, index, num_groups)[index] / (count - 1)
    adv = (r64 - mean) / (var.sqrt() + eps)
    adv = torch.where(_all_equal(r, index, num_groups), torch.zeros_like(adv), adv)
    return _result(r, index, num_groups, adv.to(r.dtype), torch.ones_like(r, dtype=torch.bool))


@register_estimator("dr_grpo")
@torch.no_grad()
def dr_grpo(rewards: Tensor, group_ids: Tensor) -> AdvantageResult:
    """Dr.GRPO: A_i = r_i - mean_g r (no std division).

    Liu et al., "Understanding R1-Zero-Like Training", arXiv 2503.20783 (the Dr. GRPO fix):
    dividing by the std over-weights nearly uniform groups. Pair it with the constant normaliser
    (aggregation ``dr_grpo``). Reward scale: {0,1}. Keeps every sequence.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    mean, count = _group_mean_count(r, index, num_groups)
    _require_groups_of_two(count, "dr_grpo")
    return _result(r, index, num_groups, r - mean, torch.ones_like(r, dtype=torch.bool))


@register_estimator("rloo")
@torch.no_grad()
def rloo(rewards: Tensor, group_ids: Tensor) -> AdvantageResult:
    """RLOO: A_i = r_i - (1/(K-1)) Σ_{j≠i} r_j = (K/(K-1)) (r_i - mean_g r).

    Ahmadian et al., "Back to Basics", arXiv 2402.14740 (RLOO, the leave-one-out baseline of
    Kool et al. 2019). The second form, an algebraic identity, is what is computed. With ±1
    rewards: A+ = 2(K-c)/(K-1), A- = -2c/(K-1) (c correct of K). Reward scale: {0,1}.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    adv, _ = _leave_one_out(r, index, num_groups, "rloo")
    return _result(r, index, num_groups, adv, torch.ones_like(r, dtype=torch.bool))


# --------------------------------------------------------------------------- raw-reward methods


@register_estimator("reinforce")
@torch.no_grad()
def reinforce(rewards: Tensor, group_ids: Tensor) -> AdvantageResult:
    """Plain REINFORCE: A_i = r_i, no baseline (Williams 1992).

    OREAL's ablation baseline (arXiv 2502.06781, Table 2, "+REINFORCE"). Reward scale: ±1, so
    wrong answers are pushed down (on {0,1} they would get no gradient). Keeps every sequence.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    return _result(r, index, num_groups, r.clone(), torch.ones_like(r, dtype=torch.bool))


def _rejected(keep: Tensor, rejected_rows: str) -> Tensor:
    """``"count"``: every row stays in the step (unselected ones have A = 0); ``"drop"``: only
    the selected rows do."""
    if rejected_rows == "count":
        return torch.ones_like(keep)
    if rejected_rows == "drop":
        return keep
    raise ValueError(f"rejected_rows must be 'count' or 'drop', got {rejected_rows!r}")


@register_estimator("reinforce_rej")
@torch.no_grad()
def reinforce_rej(
    rewards: Tensor, group_ids: Tensor, *, rejected_rows: str = "count"
) -> AdvantageResult:
    """Reinforce-Rej: A_i = r_i (raw) in groups whose rewards are not all equal, else 0.

    Xiong et al., "A Minimalist Approach to LLM Reasoning", arXiv 2504.11343. The authors' code
    (RLHFlow/Minimal-RL @e3b49f0, ``core_algos.py`` 130-171) sets A = 0 for a group whose std is
    0 and keeps its rows in the batch: ``rejected_rows="count"`` (default) does the same, so they
    stay in the token denominator and the KL and entropy terms; ``"drop"`` removes them before
    anything is counted. "All equal" is an exact comparison. Reward scale: {0,1} as released
    (wrong answers then get A = 0); ``reward_scale="pm1"`` is the reading of the paper's
    "negatives help" (its scale is not confirmed in the code).
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    selected = ~_all_equal(r, index, num_groups)
    adv = torch.where(selected, r, torch.zeros_like(r))
    return _result(r, index, num_groups, adv, _rejected(selected, rejected_rows))


@register_estimator("raft")
@torch.no_grad()
def raft(rewards: Tensor, group_ids: Tensor, *, rejected_rows: str = "count") -> AdvantageResult:
    """RAFT: A_i = max(r_i, 0); with the ``sft`` loss -A·log π, behaviour cloning on the
    correct samples.

    Dong et al. 2023 (arXiv 2304.06767); as re-examined by Xiong et al., arXiv 2504.11343
    (Minimal-RL @e3b49f0 ``core_algos.py`` 105-128). The authors' code keeps the wrong samples
    in the batch with A = 0 (``rejected_rows="count"``, default): they count in the token
    denominator, the KL and the entropy, so a step is smaller by (correct tokens)/(all tokens)
    than SFT on the correct samples alone (``"drop"``). Reward scale: {0,1}.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    return _result(r, index, num_groups, r.clamp(min=0.0), _rejected(r > 0, rejected_rows))


@register_estimator("psr")
@torch.no_grad()
def psr(rewards: Tensor, group_ids: Tensor, *, rejected_rows: str = "drop") -> AdvantageResult:
    """Positive Sample Reinforcement: A = 1 on correct samples, 0 on wrong ones.

    Zhu et al., "The Surprising Effectiveness of Negative Reinforcement", arXiv 2506.01347
    (L_PSR = -E Σ_{y: r=+1} π_θ(y|x)). The authors' code (TianHongZXY/RLVR-Decomposed @a5d4e7c,
    ``ray_trainer.py`` 1192-1200) keeps only the correct rows (``batch.subset``) before the
    update: ``rejected_rows="drop"`` (default); ``"count"`` keeps the wrong ones with A = 0.
    Reward scale: {0,1}.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    adv = torch.where(r > 0, torch.ones_like(r), torch.zeros_like(r))
    return _result(r, index, num_groups, adv, _rejected(r > 0, rejected_rows))


@register_estimator("nsr")
@torch.no_grad()
def nsr(rewards: Tensor, group_ids: Tensor, *, rejected_rows: str = "drop") -> AdvantageResult:
    """Negative Sample Reinforcement: A = -1 on wrong samples, 0 on correct ones.

    Zhu et al., arXiv 2506.01347 (L_NSR = -E Σ_{y: r=-1} -π_θ(y|x)): only push down the
    probability of wrong answers. Like :func:`psr` the authors' code keeps only the rows that
    carry gradient (``rejected_rows="drop"``, default). Reward scale: {0,1}.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    adv = torch.where(r <= 0, -torch.ones_like(r), torch.zeros_like(r))
    return _result(r, index, num_groups, adv, _rejected(r <= 0, rejected_rows))


@register_estimator("w_reinforce")
@torch.no_grad()
def w_reinforce(rewards: Tensor, group_ids: Tensor, *, lam: float = 0.1) -> AdvantageResult:
    """Weighted REINFORCE: A = λ on correct, -1 on wrong, no baseline.

    Zhu et al., arXiv 2506.01347 (W-REINFORCE, L = λ·L_PSR + L_NSR); λ = 0.1 as the authors'
    README recommends (their yaml default is 1). Reward scale: {0,1}. Keeps every sequence
    (both kinds carry gradient).
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    adv = torch.where(r > 0, torch.full_like(r, lam), -torch.ones_like(r))
    return _result(r, index, num_groups, adv, torch.ones_like(r, dtype=torch.bool))


# --------------------------------------------------------------------------- OREAL


@register_estimator("oreal")
@torch.no_grad()
def oreal(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    filter_groups: bool = True,
    uniforms: Tensor | None = None,
) -> AdvantageResult:
    """OREAL: RLOO advantage over all K rollouts, then keep one correct + one wrong per group.

    Lyu et al., arXiv 2502.06781, Algorithm 1 lines 8-9 and §2.3 (R_RLOO), as released
    (InternLM/OREAL ``train_oreal.py`` at 2859cc0):

    1. A_i = r_i - (1/(K-1)) Σ_{j≠i} r_j on the *full* group (before filtering), so p = c/K
       reflects all K samples though only two are trained on.
    2. Drop groups with c = 0 or c = K (exact count comparison).
    3. From each surviving group keep one correct and one wrong response, each uniformly at
       random: the member with the largest of ``uniforms`` (float64 in [0, 1), one per row;
       the trainer draws them keyed by (seed, step, group, sample), so the choice does not
       depend on how rows are batched or split over ranks). Without ``uniforms`` the first
       correct and the first wrong member are kept.

    ``filter_groups=False`` is the released variant without the token RM: every rollout is kept
    and degenerate groups (A = 0) contribute only to the KL term (config ``oreal_wo_tokenrm``).
    Reward scale: ±1 in the release form, {0,1} in the paper form (same selection; the RLOO
    values halve). The loss uses ``positive`` for the N+/N- split and ``pass_rate`` for the
    paper form's (1 - p) negative shaping.
    """
    r, index, num_groups = _prepare(rewards, group_ids)
    adv, count = _leave_one_out(r, index, num_groups, "oreal")
    if not filter_groups:
        return _result(r, index, num_groups, adv, torch.ones_like(r, dtype=torch.bool))

    positive = r > 0
    num_correct = _group_sum(positive.float(), index, num_groups)[index]
    mixed = (num_correct > 0) & (num_correct < count)
    if uniforms is None:  # first member of each kind: a decreasing key
        keys = -torch.arange(r.numel(), dtype=torch.float64, device=r.device)
    else:
        if uniforms.shape != r.shape:
            raise ValueError(f"uniforms {tuple(uniforms.shape)} vs rewards {tuple(r.shape)}")
        keys = uniforms.to(device=r.device, dtype=torch.float64)
    segment = index * 2 + positive.long()
    best = torch.full((num_groups * 2,), float("-inf"), dtype=torch.float64, device=r.device)
    best = best.scatter_reduce(0, segment, keys, reduce="amax")
    # float64 keys make a tie (which would keep two of a kind) a probability-2^-53 event.
    keep = mixed & (keys == best[segment])
    return _result(r, index, num_groups, adv, keep)


# --------------------------------------------------------------------------- entry point


def compute_advantages(
    params: Any, rewards: Tensor, group_ids: Tensor, *, uniforms: Tensor | None = None
) -> AdvantageResult:
    """Run the algorithm's estimator with the parameters it declares (by keyword name).

    ``params`` is a registered algorithm's parameter model; ``rewards`` must already be on its
    ``reward_scale``. Methods that learn from correctness (``params.binary``) check that they
    are, exactly. ``uniforms`` (float64 ``[B]`` in [0, 1)) reach estimators that draw (OREAL's
    1+1 selection).
    """
    if params.binary:
        check_reward_scale(rewards, params.reward_scale)
    fn = get_estimator(params.estimator)
    accepted = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {
        key: getattr(params, key) for key in accepted if key in type(params).model_fields
    }
    if "uniforms" in accepted:
        kwargs["uniforms"] = uniforms
    return fn(rewards, group_ids, **kwargs)
