"""The trainer: one step of the story on the step record, and the loop around it.

    problems -> rollouts -> verdicts/rewards -> advantages -> (token RM) -> loss -> update -> eval

``Trainer(model=..., reward_funcs=..., train_dataset=..., args=OrealConfig(...)).train()``, as
TRL's trainers are called; every argument but ``args`` may be left to the config. Components
are built by :mod:`oreal.train.build`; the evaluation, checkpoint and logging cadence are
callbacks (:mod:`oreal.train.callbacks`); where the run executes (one process or ``torchrun``
ranks) is :mod:`oreal.runtime`. The trainer owns what a checkpoint must hold: the policy, the
token RM, their optimizers and schedules, the data position and the step. Every random draw is
keyed by (seed, purpose, step, ...), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from oreal.algorithms import compute_advantages
from oreal.batch import Rollout, StepBatch, TrainBatch
from oreal.data import Problem, render_prompt
from oreal.eval import EvalResult, evaluate_problems
from oreal.models.logprobs import batch_logprobs
from oreal.models.lora import MergedLoraState, is_lora, lora_scaling
from oreal.optim import advance_schedule
from oreal.rollout import Generator, SamplingParams
from oreal.rollout.mismatch import mismatch_metrics, truncated_importance_weights
from oreal.runtime import Runtime
from oreal.seeding import Purpose, derive_seed, keyed_uniforms
from oreal.train.build import Components, Inputs, build_components, check_inputs
from oreal.train.callbacks import Callback, LoggingCallback, with_defaults
from oreal.train.checkpoint import Checkpoint, find_resumable, load_policy_weights, save_trainer
from oreal.train.config import OrealConfig
from oreal.train.engine import RebuildableEngine
from oreal.train.records import RunLock, gather_step_records, prepare_run_dir
from oreal.train.update import policy_update

__all__ = ["Trainer"]


class Trainer:
    """Outcome-reward RL on a causal LM (module docstring).

    - ``model``: a name or path (``"embedded"``, a hub id, a run checkpoint) or a
      ``PreTrainedModel``; default ``args.model.name_or_path``.
    - ``reward_funcs``: a callable, ``"verifier"``, ``"module:function"``, or a list of them
      (each weight 1); default ``args.reward.functions``.
    - ``train_dataset`` / ``eval_dataset``: a source string (bundled name, file, spec), a
      ``datasets.Dataset``, a list of dicts (``question`` and ``answer`` fields, or the ones
      ``args.data`` names) or of :class:`oreal.data.Problem`; default ``args.data``.
    - ``tokenizer``: needed with a model object whose tokenizer cannot be loaded by name.
    - ``resume_from``: a run directory to continue from its latest checkpoint.
    """

    def __init__(
        self,
        model: Any = None,
        reward_funcs: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        args: OrealConfig | None = None,
        tokenizer: Any = None,
        *,
        callbacks: Sequence[Callback] = (),
        resume_from: str | Path | None = None,
        generator: Generator | None = None,
        console: Console | None = None,
    ) -> None:
        self.config = args if args is not None else OrealConfig()
        config = self.config
        device = None if config.model.device == "auto" else config.model.device
        self.runtime = Runtime.from_env(device)
        self.console = console or Console(
            stderr=True, soft_wrap=True, quiet=not self.runtime.is_main
        )
        if config.train.threads is not None:
            torch.set_num_threads(config.train.threads)
        self.resume_dir = Path(resume_from) if resume_from is not None else None
        checkpoint_path, resumed = find_resumable(self.resume_dir, self.console)
        #: a resumed run without any checkpoint starts over in its directory
        self.restarted = self.resume_dir is not None and resumed is None
        # Everything that can be checked without a model is checked before the run directory
        # is written and before any model loads: bad input leaves nothing behind.
        inputs = check_inputs(
            config,
            model=model,
            reward_funcs=reward_funcs,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
        )
        try:
            run_dir = prepare_run_dir(config, self.resume_dir) if self.runtime.is_main else None
        except BaseException:
            inputs.close()
            raise
        self.run_dir = Path(self.runtime.broadcast_object(str(run_dir) if run_dir else None))
        self._lock = RunLock(self.run_dir) if self.runtime.is_main else None
        self.console.print(f"run directory: {self.run_dir}")
        self._saved_step = resumed.step if resumed is not None else 0  # step 0: nothing to save
        self._step_start: tuple[int, int] | None = None  # data position while in a step
        self._pending: dict[str, float] | None = None  # a finished step's record in callbacks
        self._updating = False  # True while an optimizer may have stepped in this step

        try:
            parts = self._build(inputs, model, tokenizer, generator, resumed, checkpoint_path)
        except BaseException:
            inputs.close()
            if self._lock is not None:
                self._lock.release()
            raise
        self.algorithm = parts.algorithm
        assert parts.reward is not None
        self.reward = parts.reward
        self.train_problems, self.eval_problems = parts.train_problems, parts.eval_problems
        self.policy, self.tokenizer = parts.policy, parts.tokenizer
        self.reference, self.token_rm = parts.reference, parts.token_rm
        self.generator = parts.generator
        self._generator_shares_policy = parts.generator_shares_policy
        self.optimizer, self.scheduler = parts.optimizer, parts.scheduler
        self._eval_verifier = self.reward.verifier
        self._owns_eval_verifier = False
        self.step, self.data_epoch, self.data_position = 0, 0, 0
        if resumed is not None:
            self.step = resumed.step
            self.data_epoch, self.data_position = resumed.data_epoch, resumed.data_position
        if checkpoint_path is not None:
            self.console.print(f"resumed from {checkpoint_path} (step {self.step})")
            if not self._generator_shares_policy:  # its copy holds the initial weights
                self._sync_generator()
        self.callbacks: list[Callback] = with_defaults(callbacks)
        self.last_batch: StepBatch | None = None
        self.last_samples: list[dict[str, Any]] = []

    def _build(
        self,
        inputs: Inputs,
        model: Any,
        tokenizer: Any,
        generator: Generator | None,
        resumed: Checkpoint | None,
        checkpoint_path: Path | None,
    ) -> Components:
        def resume_policy(policy: torch.nn.Module) -> None:
            assert checkpoint_path is not None and resumed is not None
            load_policy_weights(policy, checkpoint_path, resumed)

        return build_components(
            self.config,
            self.runtime,
            inputs,
            model=model,
            tokenizer=tokenizer,
            generator=generator,
            resume=resumed,
            resume_policy=resume_policy if resumed is not None else None,
        )

    # ------------------------------------------------------------------------------ the recipe
    def train(self) -> dict[str, Any]:
        """Evaluate, run the remaining steps, evaluate again; returns the run summary."""
        started = time.perf_counter()
        try:
            for callback in self.callbacks:
                callback.on_train_begin(self)
            while self.step < self.config.train.steps:
                record = self.train_step()
                self._pending = record  # done, but not yet through every callback
                for callback in self.callbacks:
                    callback.on_step_end(self, record)
                self._pending = None
            summary: dict[str, Any] = {}
            for callback in self.callbacks:
                summary.update(callback.on_train_end(self, time.perf_counter() - started) or {})
            return summary
        except BaseException as error:
            self._save_after(error)
            raise
        finally:
            self.close()

    def _save_after(self, error: BaseException) -> None:
        """On Ctrl-C or an error, save the last completed step unless it is saved already.

        A step that failed before any optimizer stepped left nothing changed but the data
        position, which is put back; one that failed inside an update cannot be saved
        consistently, and the last checkpoint stands. Data-parallel runs do not try: a failed
        rank cannot join the collectives a checkpoint needs.
        """
        what = "interrupted" if isinstance(error, KeyboardInterrupt) else "stopped by an error"
        if self.runtime.distributed or self._updating or self.step <= self._saved_step:
            if self._saved_step > 0:
                self.console.print(
                    f"{what}; the last checkpoint is step {self._saved_step}: resume with "
                    f"oreal train --resume {self.run_dir}",
                    soft_wrap=True,
                )
            return
        if self._step_start is not None:  # failed inside the step: put its draw back
            self.data_epoch, self.data_position = self._step_start
        elif self._pending is not None:  # failed in a callback: the step's record is kept
            for callback in self.callbacks:
                if isinstance(callback, LoggingCallback):
                    callback.flush(self, self._pending)
        try:
            path = self.save()
        except Exception as failure:  # the original error matters more than this one
            self.console.print(f"{what}; saving a checkpoint failed too: {failure}")
            return
        self.console.print(
            f"{what} after step {self.step}: saved {path}; resume with "
            f"oreal train --resume {self.run_dir}",
            soft_wrap=True,
        )

    def train_step(self) -> dict[str, float]:
        """One step of the story; returns this step's metrics (global over ranks)."""
        cfg, step = self.config, self.step
        torch.manual_seed(derive_seed(cfg.train.seed, Purpose.TRAIN_STEP, step, self.runtime.rank))
        timings: dict[str, float] = {}
        self._step_start, self._updating = (self.data_epoch, self.data_position), False

        with _timed(timings, "time_generate"):
            batch = self.rollouts(step)  # problems -> rollouts
        with _timed(timings, "time_verify"):
            self.reward(batch)  # -> verdicts, rewards
        self.advantages(batch)  # -> advantages, keep, pass rates
        kept = batch.kept()
        train = kept.tensors(self.pad_token_id, self.runtime.device)
        num_kept = int(self.runtime.all_reduce(torch.tensor([len(kept)]))[0])

        record: dict[str, float] = {}
        frozen = False
        self._updating = True  # from here an optimizer may step: no consistent mid-step save
        if self.token_rm is not None:  # -> token weights from the RM before its update
            with _timed(timings, "time_token_rm"):
                if num_kept:
                    output = self.token_rm.step(train)
                    train.token_weights = output.weights
                    kept.set_tokens("token_weights", output.weights)
                    kept.set_tokens("token_q", output.q)
                    record.update(output.metrics)
            self.token_rm.advance_schedule()
            frozen = self.token_rm.policy_frozen(step)
            record["policy_frozen"] = float(frozen)

        if num_kept and not frozen:  # -> loss -> update
            if isinstance(self.generator, RebuildableEngine):
                self.generator.release()  # not needed until its refresh after the update
            with _timed(timings, "time_score"):
                record.update(self.score_tokens(kept, train))
            with _timed(timings, "time_train"):
                record.update(self.update(train))
            if record.get("skipped_nonfinite_updates"):
                self.console.print(
                    f"warning: step {step + 1}: a non-finite gradient (loss "
                    f"{record.get('loss', float('nan')):.4g}); the update was skipped, the "
                    "weights are unchanged"
                )
            trained = int(self.runtime.all_reduce(train.loss_mask.sum().reshape(1))[0])
            epochs = cfg.algorithm.update_epochs
            record["train_tokens_per_s"] = trained * epochs / max(timings["time_train"], 1e-9)
            if not self._generator_shares_policy:
                self._sync_generator()
        record["lr"] = self.scheduler.get_last_lr()[0]
        advance_schedule(self.scheduler)  # also a step without an update counts (release)
        self.step += 1
        self._updating, self._step_start = False, None

        self.last_batch = batch
        record.update(self.step_metrics(batch))
        record.update(timings)
        generated = sum(row.num_tokens for row in batch)
        record["generate_tokens_per_s"] = generated / max(timings["time_generate"], 1e-9)
        record["step_time"] = sum(timings.values())
        return record

    # ------------------------------------------------------------------------------ the stages
    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def next_problems(self, count: int) -> list[Problem]:
        """The next ``count`` problems of a seeded per-epoch shuffle (resumable position)."""
        chosen: list[Problem] = []
        seed = self.config.train.seed
        while len(chosen) < count:
            shuffle = torch.Generator().manual_seed(
                derive_seed(seed, Purpose.DATA_ORDER, self.data_epoch)
            )
            order = torch.randperm(len(self.train_problems), generator=shuffle)
            take = order[self.data_position : self.data_position + count - len(chosen)]
            chosen.extend(self.train_problems[int(i)] for i in take)
            self.data_position += len(take)
            if self.data_position >= len(self.train_problems):
                self.data_epoch, self.data_position = self.data_epoch + 1, 0
        return chosen

    def sampling(self, *, seed: int | None, greedy: bool = False) -> SamplingParams:
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

    def rollouts(self, step: int) -> StepBatch:
        """K samples of this rank's share of the step's prompts (a group never spans ranks)."""
        cfg = self.config
        problems = self.next_problems(cfg.rollout.prompts_per_step)  # the same on every rank
        groups = list(self.runtime.share(len(problems)))
        prompts = [render_prompt(problems[g], self.tokenizer, cfg.data.template) for g in groups]
        seed = derive_seed(cfg.train.seed, Purpose.SAMPLING, step)
        rows: list[Rollout] = []
        if prompts:
            # keys: the prompts' indices in the step, so the sampled tokens do not depend on how
            # the step is batched or split over ranks (with a keyed engine: fast, vllm)
            outputs = self.generator.generate(
                prompts, self.sampling(seed=seed), cfg.rollout.num_rollouts, keys=groups
            )
            for out in outputs:
                group = groups[out.group]
                rows.append(
                    Rollout(
                        problem=problems[group],
                        group=group,
                        sample=out.sample,
                        prompt=out.prompt,
                        prompt_ids=out.prompt_ids,
                        response_ids=out.response_ids,
                        text=out.text,
                        finish_reason=out.finish_reason,
                        sampled_logprobs=None
                        if out.logprobs is None
                        else torch.tensor(out.logprobs, dtype=torch.float32),
                    )
                )
        return StepBatch(step, rows)

    def advantages(self, batch: StepBatch) -> None:
        """Fill ``advantage``, ``keep`` and ``pass_rate`` (groups are whole on this rank)."""
        if not len(batch):
            return
        rewards = self.reward.learning_signal(batch, self.algorithm)
        uniforms = keyed_uniforms(
            self.config.train.seed,
            Purpose.SELECTION,
            batch.step,
            [row.group for row in batch],
            [row.sample for row in batch],
        )
        result = compute_advantages(self.algorithm, rewards, batch.group_ids(), uniforms=uniforms)
        batch.set("advantage", result.advantages)
        batch.set("keep", result.keep)
        batch.set("pass_rate", result.pass_rate)

    def _logprob_temperature(self) -> float:
        """Score tokens at the sampling temperature, so the loss sees the sampling policy."""
        temperature = self.config.rollout.temperature
        return temperature if temperature > 0 else 1.0

    def score_tokens(self, kept: StepBatch, train: TrainBatch) -> dict[str, float]:
        """Fill ``old_logprobs`` (several updates per batch), ``ref_logprobs`` (KL) and, with
        ``rollout.tis_cap``, the truncated importance weights (returns the mismatch metrics)."""
        cfg = self.config
        metrics: dict[str, float] = {}
        settings = {
            "micro_batch_size": cfg.train.micro_batch_size,
            "autocast": cfg.model.bf16_autocast,
            "param_dtype": cfg.model.torch_param_dtype,
            "temperature": self._logprob_temperature(),
            "runtime": self.runtime,
        }
        if cfg.algorithm.update_epochs * cfg.algorithm.minibatches > 1:
            train.old_logprobs = batch_logprobs(self.policy, train, **settings)
            kept.set_tokens("old_logprobs", train.old_logprobs)
        if cfg.rollout.tis_cap is not None:  # the engine sampled from slightly other probs
            if train.sampled_logprobs is None:
                raise RuntimeError("rollout.tis_cap: the engine reported no log-probs")
            trainer = train.old_logprobs
            if trainer is None:
                trainer = batch_logprobs(self.policy, train, **settings)
            weights = truncated_importance_weights(
                trainer, train.sampled_logprobs, cfg.rollout.tis_cap, train.loss_mask
            )
            base = train.token_weights if train.token_weights is not None else 1.0
            train.token_weights = weights * base
            kept.set_tokens("token_weights", train.token_weights)
            metrics = mismatch_metrics(
                trainer, train.sampled_logprobs, train.loss_mask, cfg.rollout.tis_cap
            )
        if self.reference is not None:
            train.ref_logprobs = self.reference.logprobs(train, **settings)
            kept.set_tokens("ref_logprobs", train.ref_logprobs)
        return metrics

    def update(self, train: TrainBatch) -> dict[str, float]:
        cfg = self.config
        record = policy_update(
            self.policy,
            self.optimizer,
            self.algorithm,
            train,
            runtime=self.runtime,
            micro_batch_size=cfg.train.micro_batch_size,
            epochs=cfg.algorithm.update_epochs,
            minibatches=cfg.algorithm.minibatches,
            grad_clip=cfg.optim.grad_clip,
            autocast=cfg.model.bf16_autocast,
            param_dtype=cfg.model.torch_param_dtype,
            temperature=self._logprob_temperature(),
            max_new_tokens=cfg.rollout.max_new_tokens,
            seed=cfg.train.seed,
            step=self.step,
        )
        self.optimizer.zero_grad(set_to_none=True)  # dead now: not held through rollouts, evals
        return record

    def step_metrics(self, batch: StepBatch) -> dict[str, float]:
        """The step's rollout metrics over every rank, and the samples to log (main rank)."""
        metrics, self.last_samples = gather_step_records(
            batch,
            self.runtime,
            self.tokenizer,
            k=self.config.rollout.num_rollouts,
            samples=self.config.train.samples_per_step,
        )
        return metrics

    # ------------------------------------------------------------------------------ evaluation
    @property
    def verifier(self) -> Any:
        """The verifier evaluation uses: the reward's, else a strict one owned here."""
        if self._eval_verifier is None:
            from oreal.verify import Verifier

            self._eval_verifier, self._owns_eval_verifier = Verifier(mode="strict"), True
        return self._eval_verifier

    def evaluate(self) -> EvalResult | None:
        """Greedy pass@1 on the held-out problems (main rank; the others wait). None without
        evaluation problems, and on the other ranks."""
        result = None
        if self.eval_problems and self.runtime.is_main:
            result = evaluate_problems(
                self.generator,
                self.eval_problems,
                template=self.config.data.template,
                sampling=self.sampling(seed=None, greedy=True),
                verifier=self.verifier,
                batch_size=self.config.rollout.max_batch_size,
            )
        self.runtime.barrier()
        return result

    # ------------------------------------------------------------------------------ state
    def _sync_generator(self) -> None:
        """Push the trained weights into a rollout engine that keeps its own copy."""
        state = self.runtime.full_state_dict(self.policy, everywhere=True)
        if is_lora(self.policy):
            # merged one weight at a time as the engine copies it: no second copy of the model
            state = MergedLoraState(state, lora_scaling(self.policy))
        self.generator.sync_weights(state)

    def save(self) -> Path | None:
        """A checkpoint of the current step (collective; the main rank writes). Its path on
        the main rank, None on the others."""
        path = save_trainer(self)
        self._saved_step = self.step
        return path

    def close(self) -> None:
        """Stop the verifier workers and release the run directory (idempotent)."""
        if self._lock is not None:
            self._lock.release()
        self.reward.close()
        if self._owns_eval_verifier and self._eval_verifier is not None:
            self._eval_verifier.close()
            self._eval_verifier = None


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    tick = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - tick
