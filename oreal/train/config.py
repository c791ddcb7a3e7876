"""The one config schema of ``oreal train``, validated by pydantic.

Defaults are the embedded CPU demo (SmolLM2-135M-Instruct, OREAL, 2-digit addition and
subtraction). Paper-scale values live in the presets under ``configs/``. Every section forbids
unknown keys, so a typo is an error that names the closest valid key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oreal.algorithms import AlgorithmParams, algorithm_params


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str = Field(
        "embedded",
        description="Hugging Face id or path, a run checkpoint, or 'embedded' (SmolLM2-135M).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16_autocast: bool = Field(True, description="bf16 compute, fp32 master weights.")
    gradient_checkpointing: bool = False
    cache_dir: str | None = None


class DataConfig(Section):
    train: str = Field(
        "synthetic:arithmetic?n=2048&digits=2&ops=add,sub&seed=0&split=train",
        description="Any oreal.data.load_problems source: a bundled name, a file, a spec.",
    )
    eval: str | None = "synthetic:arithmetic?n=64&digits=2&ops=add,sub&seed=12345&split=test"
    eval_limit: int | None = Field(64, ge=1)
    question_field: str = "question"
    answer_field: str = "answer"
    template: str = Field("boxed_short", description="Prompt template (oreal.data.templates).")


class RolloutConfig(Section):
    prompts_per_step: int = Field(8, ge=1)
    num_rollouts: int = Field(8, ge=2, description="K rollouts per prompt (one group).")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    stop: list[str] = Field(default_factory=list)
    max_batch_size: int = Field(64, ge=1, description="Sequences per generate() call.")


class RewardConfig(Section):
    function: str = Field("verifier", description="'verifier' or 'module:function'.")
    mode: Literal["strict", "lenient"] = "strict"
    timeout: float = Field(5.0, gt=0.0)


class AlgorithmConfig(Section):
    """Which method, and any knob to change from its published default.

    Fields left unset (None) take the method's own default from the algorithm registry
    (``oreal.algorithms.AlgorithmParams``); docs/algorithms.md lists every formula and value.
    """

    name: str = "oreal"
    oreal_form: Literal["release", "paper"] | None = None
    reward_scale: Literal["01", "pm1"] | None = None
    policy_loss: Literal["pg", "ppo_clip", "sft", "oreal"] | None = None
    aggregation: (
        Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "dr_grpo"] | None
    ) = None
    clip_eps_low: float = Field(0.2, ge=0.0)
    clip_eps_high: float = Field(0.28, ge=0.0)
    dual_clip: float | None = Field(None, gt=1.0)
    kl_coef: float | None = Field(None, ge=0.0)
    kl_estimator: Literal["k1", "k2", "k3"] | None = None
    kl_target: Literal["ref", "old"] | None = None
    entropy_coef: float = Field(0.0, ge=0.0)
    grpo_eps: float = Field(1e-6, gt=0.0)
    w_reinforce_lambda: float = Field(0.1, ge=0.0)
    filter_groups: bool = True
    positive_factor: float | None = Field(None, ge=0.0, description="OREAL lambda+.")
    negative_factor: float | None = Field(None, ge=0.0, description="OREAL eta.")
    pos_mult_adv: bool | None = None
    neg_weight: str | None = None
    neg_surrogate: str | None = None
    kl_normalizer: str | None = None
    update_epochs: int = Field(1, ge=1, description="Passes over one rollout batch.")
    minibatches: int = Field(1, ge=1, description="Optimizer steps per pass.")


class OptimConfig(Section):
    lr: float = Field(1e-5, gt=0.0)
    min_lr_ratio: float = Field(0.2, ge=0.0, le=1.0, description="Cosine floor (paper: 1/5).")
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = Field(1.0, gt=0.0)


class TrainConfig(Section):
    steps: int = Field(10, ge=1)
    micro_batch_size: int = Field(16, ge=1)
    seed: int = 0
    eval_every: int = Field(0, ge=0, description="0: only before and after training.")
    eval_max_new_tokens: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="0: only at the end.")
    run_dir: str | None = Field(None, description="Default: runs/<algorithm>-<timestamp>.")
    samples_per_step: int = Field(4, ge=0)
    loggers: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)
    plot: bool = True


class OrealConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_algorithm(self) -> OrealConfig:
        try:  # unknown names and inconsistent knobs fail here, naming the closest valid value
            make_algorithm_params(self.algorithm)
        except ValueError as error:
            raise ValueError(f"algorithm: {error}") from None
        return self


LOOP_ONLY_FIELDS = ("update_epochs", "minibatches")


def make_algorithm_params(config: AlgorithmConfig) -> AlgorithmParams:
    """The config section minus loop-only fields, with unset (None) fields left to the method."""
    values = config.model_dump(exclude=set(LOOP_ONLY_FIELDS), exclude_none=True)
    name, form = values.pop("name"), values.pop("oreal_form", None)
    return algorithm_params(name, form, **values)
