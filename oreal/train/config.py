"""The one config schema of ``oreal train``, validated by pydantic.

Defaults are CPU-sized values for the embedded model; the demo that ``oreal train`` runs with no
config is ``configs/demo.yaml`` and paper-scale values live in the other presets. Every section
forbids unknown keys, so a typo is an error that names the closest valid key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from oreal.algorithms import ALGORITHMS, AlgorithmParams, algorithm_params, import_plugins

if TYPE_CHECKING:
    import torch


class Section(BaseModel):
    # inf and nan are refused everywhere: optim.lr=inf once saved all-NaN weights with exit 0.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LoraConfig(Section):
    """LoRA adapters on the policy (peft; Hu et al., arXiv 2106.09685). Off when ``rank`` is 0.

    The frozen base is the KL reference (no second copy); checkpoints hold the adapter and a
    merged model that plain ``AutoModelForCausalLM.from_pretrained`` loads.
    """

    rank: int = Field(0, ge=0, description="LoRA rank r; 0 trains every weight (no LoRA).")
    alpha: float = Field(32.0, gt=0.0, description="LoRA alpha; the update is scaled by alpha/r.")
    target_modules: str | list[str] = Field(
        "all-linear", description="peft target_modules: 'all-linear' or module names."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")


class ModelConfig(Section):
    name_or_path: str = Field(
        "embedded",
        description="Hugging Face id or path, a run checkpoint, or 'embedded' (SmolLM2-135M).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when present, else CPU ($OREAL_DEVICE overrides)."
    )
    bf16_autocast: bool = Field(True, description="bf16 compute, fp32 master weights.")
    param_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description=(
            "What the update's forward/backward and the policy's scoring compute with: the "
            "fp32 weights under autocast, or bf16 copies of them cast once per step or call "
            "(bf16 norms and residual stream too; FSDP2's param_dtype). One process only."
        ),
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute each layer's activations in backward: less memory."
    )
    cache_dir: str | None = Field(
        None, description="Where the embedded GGUF is cached as safetensors (~/.cache/oreal)."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)

    @property
    def torch_param_dtype(self) -> torch.dtype:
        """``param_dtype`` as a ``torch.dtype`` (torch is imported only when asked)."""
        import torch

        return getattr(torch, self.param_dtype)

    @model_validator(mode="after")
    def _check_precision(self) -> ModelConfig:
        if self.param_dtype == "bfloat16" and not self.bf16_autocast:
            raise ValueError(
                "model.param_dtype=bfloat16 computes in bf16, model.bf16_autocast=false asks "
                "for fp32 compute: set one of them"
            )
        return self


class DataConfig(Section):
    train: str = Field(
        "synthetic:arithmetic?n=2048&digits=2&ops=add,sub&seed=0&split=train",
        description="Any oreal.data.load_problems source: a bundled name, a file, a spec.",
    )
    eval: str | None = Field(
        "synthetic:arithmetic?n=64&digits=2&ops=add,sub&seed=12345&split=test",
        description="Held-out problems for greedy pass@1 (null: no evaluation).",
    )
    eval_limit: int | None = Field(64, ge=1, description="Evaluate the first N problems.")
    question_field: str = Field("question", description="Column holding the question.")
    answer_field: str = Field("answer", description="Column holding the gold answer.")
    template: str = Field("boxed_short", description="Prompt template (oreal.data.templates).")


class VLLMConfig(Section):
    """The vLLM backend's engine (``rollout.backend: vllm``; docs/rollout.md)."""

    gpu_memory_utilization: float = Field(
        0.3, gt=0.0, le=1.0, description="Share of GPU memory the engine reserves (KV cache)."
    )
    max_model_len: int | None = Field(
        None, ge=1, description="Context the engine allocates for (default: the model's)."
    )
    enforce_eager: bool = Field(False, description="No CUDA graphs (slower, starts faster).")


class RolloutConfig(Section):
    prompts_per_step: int = Field(8, ge=1, description="Prompts per step (over all ranks).")
    num_rollouts: int = Field(8, ge=2, description="K rollouts per prompt (one group).")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus mass (1: off).")
    top_k: int = Field(0, ge=0, description="Top-k filter (0: off).")
    max_new_tokens: int = Field(64, ge=1, description="Response budget; longer is truncated.")
    stop: list[str] = Field(
        default_factory=list, description="Strings that end a response, like eos."
    )
    max_batch_size: int = Field(64, ge=1, description="Sequences per generate() call.")
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="Longest prompt (tokens) to train or evaluate on; default: the model's "
        "context length minus max_new_tokens.",
    )
    long_prompts: Literal["skip", "error"] = Field(
        "skip", description="A longer prompt is skipped (with a warning) or an error."
    )
    backend: Literal["auto", "fast", "hf", "vllm"] = Field(
        "auto",
        description="Rollout engine: fast (CPU, keyed and layout-invariant sampling), hf "
        "(transformers generate), vllm; auto: vllm on GPU when installed, else hf on GPU, fast "
        "on CPU.",
    )
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)
    tis_cap: float | None = Field(
        None,
        gt=0.0,
        description="Truncated importance sampling of the policy gradient by "
        "min(pi_trainer/pi_engine, cap) (Yao et al. 2025: 2); needs an engine that reports "
        "log-probs (fast, vllm).",
    )


class RewardTermConfig(Section):
    """One reward term: ``verifier``, ``module:function`` or ``path/file.py:function``."""

    function: str
    weight: float = Field(1.0, allow_inf_nan=False)
    name: str | None = Field(None, description="Logged as reward/<name>; default: the function's.")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.function.rpartition(":")[2] if self.function != "verifier" else "verifier"


class RewardConfig(Section):
    """The reward terms (oreal.rewards): each weighted and logged as ``reward/<name>``.

    ``functions`` entries are a string (weight 1) or ``{function, weight, name}``.
    """

    functions: list[RewardTermConfig] = Field(
        default_factory=lambda: [RewardTermConfig(function="verifier")],
        description="Terms: 'verifier', 'module:fn', 'file.py:fn' or {function, weight, name}.",
    )
    mode: Literal["strict", "lenient"] = Field("strict", description="The verifier's mode.")
    timeout: float = Field(5.0, gt=0.0, description="Seconds per verifier check.")

    @model_validator(mode="before")
    @classmethod
    def _terms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "function" in data:
            raise ValueError(
                "reward.function was replaced by reward.functions, a list of terms: "
                f"reward.functions=[{data['function']}]"
            )
        functions = data.get("functions")
        if isinstance(functions, str):
            functions = [functions]
        if isinstance(functions, list):
            data = {
                **data,
                "functions": [{"function": f} if isinstance(f, str) else f for f in functions],
            }
        return data

    @model_validator(mode="after")
    def _distinct(self) -> RewardConfig:
        labels = [term.label for term in self.functions]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"reward.functions: give each term its own name; repeated {repeated}")
        if not self.functions:
            raise ValueError("reward.functions is empty: name at least one term (e.g. verifier)")
        return self


class AlgorithmConfig(Section):
    """Which method, its parameters, and the update loop around it.

    ``params`` is validated against the method's own parameter model (its fields and defaults:
    ``oreal.algorithms.methods``, docs/algorithms.md); unset parameters take the published
    value. ``plugins`` are modules (``package.module`` or ``path/to/file.py``) imported before
    validation, so an algorithm registered in a user's file is known by name.
    """

    name: str = Field("oreal", description="A registered algorithm (docs/algorithms.md).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The algorithm's parameters (below, per algorithm)."
    )
    plugins: list[str] = Field(
        default_factory=list, description="Modules or .py files imported first (their code runs)."
    )
    update_epochs: int = Field(1, ge=1, description="Passes over one rollout batch.")
    minibatches: int = Field(1, ge=1, description="Optimizer steps per pass.")
    _resolved: AlgorithmParams | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        for key in data:
            if key in known:
                continue
            target = "form" if key == "oreal_form" else key
            if any(target in model.model_fields for model in ALGORITHMS.values()):
                raise ValueError(
                    f"algorithm.{key} is a parameter of the method: write algorithm.params.{target}"
                )
        return data

    @model_validator(mode="after")
    def _resolve(self) -> AlgorithmConfig:
        import_plugins(self.plugins)
        self._resolved = algorithm_params(self.name, **self.params)
        return self

    @property
    def resolved(self) -> AlgorithmParams:
        """The method's validated parameter model, every default filled in."""
        if self._resolved is None:
            self._resolved = algorithm_params(self.name, **self.params)
        return self._resolved


class OptimConfig(Section):
    lr: float = Field(1e-5, gt=0.0, description="Peak AdamW learning rate of the policy.")
    min_lr_ratio: float = Field(0.2, ge=0.0, le=1.0, description="Cosine floor (paper: 1/5).")
    warmup_steps: int = Field(
        0, ge=0, description="The release's warm-up lr·(s+1)/W, then cosine (oreal.optim)."
    )
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    grad_clip: float | None = Field(1.0, gt=0.0, description="Max gradient norm (null: off).")


class TokenRMConfig(Section):
    """OREAL's token-level reward model (arXiv 2502.06781 §2.4; docs/token_rm.md).

    The defaults are the release's (InternLM/OREAL ``train_oreal.py`` @2859cc0): RM lr 2e-6 ->
    4e-7 cosine after a 10-step warm-up lr·(s+1)/10 from step 0, 10 policy-frozen steps, q_t
    from the cumulative mean of h_t read at the position *before* each token (the state that
    produced it). ``weight_source: per_token`` and ``score_position: token`` are the paper's
    reading (preset ``oreal_paper_qwen2.5_7b``). The CPU demo preset ``demo_token_rm`` changes
    the schedule for a 135M model.
    """

    enabled: bool = Field(False, description="Train the token RM and weight the OREAL loss.")
    backbone: Literal["copy", "lora"] = Field(
        "copy", description="'copy': full trainable copy; 'lora': adapters on a frozen backbone."
    )
    name_or_path: str | None = Field(
        None, description="Backbone checkpoint (same vocabulary); default: the initial policy."
    )
    lr: float = Field(2e-6, gt=0.0, description="Peak AdamW learning rate of the RM.")
    min_lr_ratio: float = Field(0.2, ge=0.0, le=1.0, description="Cosine floor (paper: 1/5).")
    warmup_steps: int = Field(10, ge=0, description="The release's warm-up lr·(s+1)/W.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    grad_clip: float | None = Field(1.0, gt=0.0, description="Max gradient norm (null: off).")
    policy_freeze_steps: int = Field(
        10, ge=0, description="First steps that train only the RM (release actor_freeze_steps)."
    )
    weight_source: Literal["cumulative_mean", "per_token"] = Field(
        "cumulative_mean", description="q_t from the prefix mean (release) or h_t (paper)."
    )
    topk_rescale: float | None = Field(
        None, gt=0.0, le=1.0, description="Top-k ratio (release option 0.25); None: threshold."
    )
    score_position: Literal["token", "previous"] = Field(
        "previous", description="h_t from the state at t - 1 (release) or at token t (paper)."
    )
    micro_batch_size: int | None = Field(None, ge=1, description="Default: train's.")
    lora_rank: int = Field(16, ge=1, description="backbone=lora: LoRA rank.")
    lora_alpha: float = Field(32.0, gt=0.0, description="backbone=lora: LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="backbone=lora: dropout.")
    lora_target_modules: str | list[str] = Field(
        "all-linear", description="backbone=lora: peft target_modules."
    )


class TrainConfig(Section):
    steps: int = Field(10, ge=1, description="Training steps (token-RM-only steps included).")
    micro_batch_size: int = Field(16, ge=1, description="Rows per forward/backward pass.")
    seed: int = Field(0, description="Keys every random draw (oreal.seeding).")
    eval_every: int = Field(0, ge=0, description="0: only before and after training.")
    eval_max_new_tokens: int | None = Field(
        None, ge=1, description="Evaluation budget (default: rollout.max_new_tokens)."
    )
    checkpoint_every: int = Field(0, ge=0, description="0: only at the end.")
    run_dir: str | None = Field(None, description="Default: runs/<algorithm>-<timestamp>.")
    samples_per_step: int = Field(4, ge=0, description="Rollouts logged to samples.jsonl.")
    loggers: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="Mirrors of metrics.jsonl."
    )
    plot: bool = Field(True, description="Write curves.png at the end.")
    save_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="dtype of the policy weights a checkpoint holds: bfloat16 halves them for "
        "sharing, but a run resumed from them is no longer bit-identical",
    )
    keep_checkpoints: int | None = Field(
        None, ge=1, description="Keep only the newest N checkpoints (default: all)."
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads; recorded, so a resumed run computes the same numbers.",
    )


class OrealConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    token_rm: TokenRMConfig = Field(default_factory=TokenRMConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def record(self) -> dict[str, Any]:
        """The config as a run records it: the method's parameters with every default filled."""
        data = self.model_dump(mode="json")
        data["algorithm"]["params"] = self.algorithm.resolved.model_dump(mode="json")
        return data

    @model_validator(mode="after")
    def _check_reward_terms(self) -> OrealConfig:
        from oreal.rewards import RewardError, check_terms_for

        terms = [(t.label, t.weight, t.function == "verifier") for t in self.reward.functions]
        try:
            check_terms_for(self.algorithm.resolved, terms)
        except RewardError as error:
            raise ValueError(str(error)) from None
        return self

    @model_validator(mode="after")
    def _check_rollout(self) -> OrealConfig:
        if self.rollout.tis_cap is not None and self.rollout.backend == "hf":
            raise ValueError(
                "rollout.tis_cap needs the engine's log-probs, which rollout.backend=hf does not "
                "report: use backend fast (CPU) or vllm"
            )
        return self

    @model_validator(mode="after")
    def _check_token_rm(self) -> OrealConfig:
        rm = self.token_rm
        if not rm.enabled:
            return self
        # The weights are w+ on correct and w- on wrong rows of OREAL's split loss; other
        # methods have no such split (and GRPO's z-scored advantages already sign each row).
        if self.algorithm.name != "oreal":
            raise ValueError(
                "token_rm.enabled needs algorithm.name=oreal (its weights w+/w- enter OREAL's "
                f"positive/negative terms); got algorithm.name={self.algorithm.name!r}"
            )
        if self.model.param_dtype == "bfloat16":  # it borrows the reference's weights
            raise ValueError(
                "token_rm.enabled trains the token RM under autocast over fp32 weights; it "
                "does not support model.param_dtype=bfloat16 yet"
            )
        if rm.policy_freeze_steps >= self.train.steps:
            raise ValueError(
                f"token_rm.policy_freeze_steps={rm.policy_freeze_steps} leaves no policy update "
                f"in train.steps={self.train.steps}"
            )
        return self
