"""The RL training loop, read top to bottom as one story.

    problems -> rollouts -> verdicts -> advantages -> (token RM) -> loss -> update -> eval

:class:`Trainer` owns everything a checkpoint must hold (policy, optimizer, scheduler, data
order, step); each stage it calls is a stateless function of another sub-package. Randomness
is derived from ``(seed, step)`` at every stage, so a resumed run draws exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from oreal.algorithms import AdvantageResult, compute_advantages
from oreal.batch import TrainTensors, pad_rollouts
from oreal.data import Problem, load_problems, render_prompt
from oreal.eval import EvalResult, evaluate_problems
from oreal.models import load_policy, pick_device
from oreal.rewards import build_reward
from oreal.rollout import HFGenerator, RolloutBatch, SamplingParams
from oreal.seeding import Purpose, keyed_uniforms
from oreal.token_rm import TokenRMOutput, TokenRMTrainer
from oreal.train.checkpoint import (
    TrainerState,
    capture_rng_state,
    latest_checkpoint,
    load_trainer_state,
    restore_rng_state,
    save_checkpoint,
)
from oreal.train.config import OrealConfig
from oreal.train.metrics import MetricsWriter, plot_curves
from oreal.train.records import (
    eval_line,
    prepare_run_dir,
    progress_bar,
    rollout_metrics,
    sample_records,
    write_summary,
)
from oreal.train.update import (
    UpdateBatch,
    advance_schedule,
    make_optimizer,
    policy_update,
    score_logprobs,
)


def derived_seed(seed: int, step: int, stage: int) -> int:
    """A distinct, reproducible seed per (run seed, step, stage)."""
    return (seed * 1_000_003 + step * 1_009 + stage) % (2**31 - 1)


class Trainer:
    """Outcome-reward RL on a causal LM; ``Trainer(config).train()`` runs the whole recipe."""

    def __init__(
        self,
        config: OrealConfig,
        *,
        resume_dir: Path | None = None,
        console: Console | None = None,
    ):
        self.config = config
        self.console = console or Console(stderr=True)
        self.params = config.algorithm.resolved
        torch.manual_seed(config.train.seed)
        device = None if config.model.device == "auto" else config.model.device
        self.device = pick_device(device)
        self.autocast = config.model.bf16_autocast

        data = config.data
        fields = {"question_field": data.question_field, "answer_field": data.answer_field}
        self.train_problems = load_problems(data.train, **fields)
        self.eval_problems: list[Problem] = (
            load_problems(data.eval, limit=data.eval_limit, **fields) if data.eval else []
        )

        self.policy, self.tokenizer = load_policy(
            config.model.name_or_path,
            device=self.device,
            cache_dir=config.model.cache_dir,
            gradient_checkpointing=config.model.gradient_checkpointing,
        )
        # The frozen reference is the *initial* policy (oreal.md §8), also after a resume.
        self.reference = self._frozen_copy() if self._needs_reference() else None
        # OREAL's token-level reward model, also built from the initial policy (oreal.md §4).
        self.token_rm: TokenRMTrainer | None = None
        if config.token_rm.enabled:
            self.token_rm = TokenRMTrainer.from_config(
                config, self.policy, self.reference, self.tokenizer, self.device
            )

        self.step = 0
        self.data_epoch, self.data_position = 0, 0
        self.run_dir = prepare_run_dir(config, resume_dir)
        checkpoint = latest_checkpoint(self.run_dir) if resume_dir else None
        if resume_dir and checkpoint is None:
            raise FileNotFoundError(f"{resume_dir} has no checkpoint to resume from")
        if checkpoint is not None:
            self._load_policy_weights(checkpoint / "policy")

        self.generator = HFGenerator(
            self.policy,
            self.tokenizer,
            max_batch_size=config.rollout.max_batch_size,
            autocast=self.autocast,
        )
        self.reward = build_reward(
            config.reward.function, mode=config.reward.mode, timeout=config.reward.timeout
        )
        self.optimizer, self.scheduler = make_optimizer(
            [p for p in self.policy.parameters() if p.requires_grad],
            config.optim,
            config.train.steps,
        )
        if checkpoint is not None:
            self._load_state(checkpoint)
        self.metrics = MetricsWriter(
            self.run_dir,
            config.train.loggers,
            resume_step=self.step if checkpoint is not None else None,
            config=config.model_dump(mode="json"),
        )

    # ------------------------------------------------------------------------------ the recipe
    def train(self) -> dict[str, Any]:
        """Evaluate, run the remaining steps, evaluate again; returns the run summary."""
        cfg = self.config.train
        started = time.perf_counter()
        before = self.evaluate() if self.step == 0 and self.eval_problems else None
        if before is not None:
            self.metrics.log_step(0, {"eval_accuracy": before.accuracy})
            self.console.print(eval_line("before training", before))
        with progress_bar(self.console) as progress:
            task = progress.add_task("train", total=cfg.steps, completed=self.step, status="")
            while self.step < cfg.steps:
                record = self.train_step()
                last = self.step == cfg.steps
                if (
                    self.eval_problems
                    and not last
                    and cfg.eval_every
                    and self.step % cfg.eval_every == 0
                ):
                    record["eval_accuracy"] = self.evaluate().accuracy
                if last and self.eval_problems:
                    after = self.evaluate()
                    record["eval_accuracy"] = after.accuracy
                self.metrics.log_step(self.step, record)
                if last or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                    self.save()
                status = f"reward {record['reward_mean']:.3f}"
                if "eval_accuracy" in record:
                    status += f"  eval {record['eval_accuracy']:.3f}"
                progress.update(task, advance=1, status=status)
        summary = write_summary(
            self.run_dir,
            steps=self.step,
            seconds=time.perf_counter() - started,
            eval_problems=len(self.eval_problems),
            console=self.console,
        )
        self.metrics.close()
        if cfg.plot:
            plot_curves(self.run_dir)
        return summary

    def train_step(self) -> dict[str, float]:
        """One step of the story; returns this step's metrics."""
        cfg, step = self.config, self.step
        timings: dict[str, float] = {}
        tick = time.perf_counter()

        # problems -> rollouts
        problems = self._next_problems(cfg.rollout.prompts_per_step)
        prompts = [render_prompt(p, self.tokenizer, cfg.data.template) for p in problems]
        sampling = self._sampling(seed=derived_seed(cfg.train.seed, step, 0))
        rollouts = self.generator.generate(prompts, sampling, cfg.rollout.num_rollouts)
        timings["time_generate"] = time.perf_counter() - tick

        # rollouts -> verdicts
        tick = time.perf_counter()
        group_problems = [problems[output.group] for output in rollouts]
        scores = self.reward(
            group_problems, [o.text for o in rollouts], [o.truncated for o in rollouts]
        )
        timings["time_verify"] = time.perf_counter() - tick

        # verdicts -> advantages
        score_tensor = torch.tensor(scores, dtype=torch.float32)
        rewards = score_tensor if self.params.reward_scale == "01" else 2 * score_tensor - 1
        uniforms = keyed_uniforms(
            cfg.train.seed,
            Purpose.SELECTION,
            step,
            rollouts.group_index,
            [o.sample for o in rollouts],
        )
        result = compute_advantages(
            self.params, rewards, torch.tensor(rollouts.group_index), uniforms=uniforms
        )
        kept = result.keep.nonzero().flatten()

        # advantages -> token weights: from the RM before its update; then the RM's update
        record = rollout_metrics(rollouts, score_tensor, result.keep)
        tensors = self._kept_tensors(rollouts, kept) if len(kept) else None
        rm_output: TokenRMOutput | None = None
        frozen = False  # during the RM warm-up the policy takes no gradient and no step
        if self.token_rm is not None:
            tick = time.perf_counter()
            if tensors is not None:
                rm_output = self.token_rm.update(tensors, result.positive[kept])
                record.update(rm_output.metrics)
            self.token_rm.advance_schedule()
            frozen = self.token_rm.policy_frozen(step)
            record["policy_frozen"] = float(frozen)
            timings["time_token_rm"] = time.perf_counter() - tick

        # -> loss -> update
        tick = time.perf_counter()
        if tensors is not None and not frozen:
            weights = rm_output.weights if rm_output is not None else None
            batch = self._update_batch(tensors, kept, result, weights)
            timings["time_score"] = time.perf_counter() - tick
            tick = time.perf_counter()
            update_seed = torch.Generator().manual_seed(derived_seed(cfg.train.seed, step, 2))
            record.update(
                policy_update(
                    self.policy,
                    self.optimizer,
                    self.params,
                    batch,
                    micro_batch_size=cfg.train.micro_batch_size,
                    epochs=cfg.algorithm.update_epochs,
                    minibatches=cfg.algorithm.minibatches,
                    grad_clip=cfg.optim.grad_clip,
                    autocast=self.autocast,
                    temperature=self._logprob_temperature(),
                    max_new_tokens=cfg.rollout.max_new_tokens,
                    generator=update_seed,
                )
            )
            timings["time_train"] = time.perf_counter() - tick
            trained_tokens = int(batch.tensors.loss_mask.sum()) * cfg.algorithm.update_epochs
            record["train_tokens_per_s"] = trained_tokens / max(timings["time_train"], 1e-9)
        record["lr"] = self.scheduler.get_last_lr()[0]
        # A step that took no optimizer step (no kept rows, or RM-only) still counts.
        advance_schedule(self.scheduler)
        self.step += 1

        record.update(timings)
        record["generate_tokens_per_s"] = rollouts.stats.get("tokens_per_s", 0.0)
        record["step_time"] = sum(timings.values())
        if cfg.train.samples_per_step > 0:
            samples = sample_records(
                rollouts,
                scores,
                result,
                kept,
                rm_output,
                tokenizer=self.tokenizer,
                verdicts=getattr(self.reward, "last_verdicts", None),
                count=cfg.train.samples_per_step,
            )
            self.metrics.log_samples(self.step, samples)
        return record

    # ------------------------------------------------------------------------------ the stages
    def _next_problems(self, count: int) -> list[Problem]:
        """The next ``count`` problems of a seeded per-epoch shuffle (resumable position)."""
        chosen: list[Problem] = []
        while len(chosen) < count:
            order = torch.randperm(
                len(self.train_problems),
                generator=torch.Generator().manual_seed(
                    derived_seed(self.config.train.seed, self.data_epoch, 3)
                ),
            )
            take = order[self.data_position : self.data_position + count - len(chosen)]
            chosen.extend(self.train_problems[int(i)] for i in take)
            self.data_position += len(take)
            if self.data_position >= len(self.train_problems):
                self.data_epoch, self.data_position = self.data_epoch + 1, 0
        return chosen

    def _sampling(self, seed: int | None, greedy: bool = False) -> SamplingParams:
        rollout = self.config.rollout
        max_new = rollout.max_new_tokens
        if greedy and self.config.train.eval_max_new_tokens:
            max_new = self.config.train.eval_max_new_tokens
        return SamplingParams(
            max_new_tokens=max_new,
            temperature=0.0 if greedy else rollout.temperature,
            top_p=rollout.top_p,
            top_k=rollout.top_k,
            stop=tuple(rollout.stop),
            seed=seed,
        )

    def _logprob_temperature(self) -> float:
        """Score tokens at the sampling temperature, so the loss sees the sampling policy."""
        temperature = self.config.rollout.temperature
        return temperature if temperature > 0 else 1.0

    def _kept_tensors(self, rollouts: RolloutBatch, kept: torch.Tensor) -> TrainTensors:
        pairs = [
            (rollouts.outputs[int(i)].prompt_ids, rollouts.outputs[int(i)].response_ids)
            for i in kept
        ]
        return pad_rollouts(pairs, self.generator.pad_token_id, device=self.device)

    def _update_batch(
        self,
        tensors: TrainTensors,
        kept: torch.Tensor,
        result: AdvantageResult,
        token_weights: torch.Tensor | None,
    ) -> UpdateBatch:
        micro = self.config.train.micro_batch_size
        score = {"micro_batch_size": micro, "autocast": self.autocast}
        score["temperature"] = self._logprob_temperature()
        several_updates = self.config.algorithm.update_epochs * self.config.algorithm.minibatches
        old = score_logprobs(self.policy, tensors, **score) if several_updates > 1 else None
        ref = None
        if self.reference is not None:
            # A LoRA token RM patches the shared reference's layers: score without adapters.
            scope = self.token_rm.reference_scope() if self.token_rm else contextlib.nullcontext()
            with scope:
                ref = score_logprobs(self.reference, tensors, **score)
        return UpdateBatch(
            tensors=tensors,
            advantages=result.advantages[kept].to(self.device),
            positive=result.positive[kept].to(self.device),
            pass_rate=result.pass_rate[kept].to(self.device),
            token_weights=token_weights,  # w+ / w- of the token RM, [B, R] like loss_mask
            old_logprobs=old,
            ref_logprobs=ref,
        )

    def evaluate(self) -> EvalResult:
        """Greedy pass@1 on the held-out problems with the strict verifier."""
        return evaluate_problems(
            self.generator,
            self.eval_problems,
            template=self.config.data.template,
            sampling=self._sampling(seed=None, greedy=True),
            verifier=self.reward.verifier if hasattr(self.reward, "verifier") else None,
            batch_size=self.config.rollout.max_batch_size,
        )

    # ------------------------------------------------------------------------------ state
    def _needs_reference(self) -> bool:
        return self.params.needs_reference

    def _frozen_copy(self) -> torch.nn.Module:
        reference = copy.deepcopy(self.policy)
        reference.eval()
        for parameter in reference.parameters():
            parameter.requires_grad_(False)
        return reference

    def _load_policy_weights(self, policy_dir: Path) -> None:
        from transformers import AutoModelForCausalLM

        trained = AutoModelForCausalLM.from_pretrained(str(policy_dir), dtype=torch.float32)
        self.policy.load_state_dict(trained.state_dict())

    def save(self) -> Path:
        state = TrainerState(
            step=self.step,
            data_position=self.data_position,
            data_epoch=self.data_epoch,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=capture_rng_state(),
        )
        extra_modules = {}
        if self.token_rm is not None:  # the release never saves its RM; an exact resume needs it
            state.extra["token_rm"] = self.token_rm.state_dict()
            extra_modules["token_rm"] = self.token_rm.model.trainable_state_dict()
        return save_checkpoint(
            self.run_dir, self.step, self.policy, self.tokenizer, state, extra_modules
        )

    def _load_state(self, checkpoint: Path) -> None:
        state = load_trainer_state(checkpoint)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        if self.token_rm is not None:
            self.token_rm.restore(checkpoint, state.extra)
        restore_rng_state(state.rng)
        self.step, self.data_position, self.data_epoch = (
            state.step,
            state.data_position,
            state.data_epoch,
        )
        self.console.print(f"resumed from {checkpoint} (step {self.step})")
