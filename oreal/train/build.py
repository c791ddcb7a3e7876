"""Building a run's components from its config (and the Python API's objects), in the order
that lets every mistake surface before any model loads.

1. the algorithm (validated with the config; plug-ins imported), the reward terms (user
   functions imported), the training and evaluation problems, the prompt template, the device;
2. the policy and its tokenizer; from the *initial* policy the frozen reference and the token RM;
   then LoRA adapters, the resumed weights, the rollout engine;
3. sharding (data parallelism) and the optimizers.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from oreal.algorithms import AlgorithmParams
from oreal.data import Problem, get_template, load_problems, render_prompt
from oreal.data.loaders import problems_from_rows
from oreal.errors import UserError
from oreal.models import load_policy, prepare_tokenizer
from oreal.models.device import autocast_dtype
from oreal.models.logprobs import _decoder_and_head
from oreal.models.lora import LoraSettings, apply_lora
from oreal.models.reference import FrozenReference, low_precision_reference_supported
from oreal.optim import make_optimizer, restore_schedule
from oreal.rewards import RewardError, RewardStage, build_terms, check_terms_for
from oreal.rollout import Generator, HFGenerator
from oreal.runs import resolve_model
from oreal.runtime import Runtime
from oreal.seeding import Purpose, derive_seed
from oreal.token_rm import TokenRMTrainer
from oreal.train.checkpoint import Checkpoint
from oreal.train.config import OrealConfig
from oreal.train.engine import RebuildableEngine

__all__ = [
    "BuildError",
    "Components",
    "Inputs",
    "build_components",
    "check_inputs",
    "decoder_layers",
    "problems_from",
]

RewardFunc = str | Callable[..., Any]
logger = logging.getLogger(__name__)


class BuildError(UserError):
    """Something in the config or the arguments that cannot make a run (one clear line)."""


@dataclass
class Components:
    """What a trainer trains with; the trainer owns what a checkpoint must hold of it."""

    algorithm: AlgorithmParams
    policy: nn.Module
    tokenizer: Any
    reference: FrozenReference | None
    token_rm: TokenRMTrainer | None
    generator: Generator
    generator_shares_policy: bool
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    reward: RewardStage | None = None
    train_problems: list[Problem] = field(default_factory=list)
    eval_problems: list[Problem] = field(default_factory=list)


def problems_from(
    source: Any, config: OrealConfig, *, label: str, limit: int | None = None
) -> list[Problem]:
    """Problems from a source string, a ``datasets.Dataset``, a list of dicts or of Problems."""
    fields = {
        "question_field": config.data.question_field,
        "answer_field": config.data.answer_field,
    }
    if isinstance(source, str):
        return load_problems(source, limit=limit, **fields)
    rows = list(source)
    if rows and all(isinstance(row, Problem) for row in rows):
        return rows[:limit] if limit is not None else rows
    located = ((dict(row), None, index) for index, row in enumerate(rows))
    return problems_from_rows(located, label, limit=limit, id_prefix=label, **fields)


def _problems(source: Any, config: OrealConfig, *, label: str, key: str) -> list[Problem]:
    """:func:`problems_from`, with bad input turned into one line naming the config key."""
    limit = config.data.eval_limit if key == "data.eval" else None
    try:
        return problems_from(source, config, label=label, limit=limit)
    except UserError:
        raise
    except (ValueError, ImportError) as error:  # an unknown source, a missing extra
        raise BuildError(f"{key}: {error}") from None


def _reward_stage(config: OrealConfig, reward_funcs: Any) -> RewardStage:
    if reward_funcs is None:
        specs: list[tuple[RewardFunc, float, str | None]] = [
            (term.function, term.weight, term.name) for term in config.reward.functions
        ]
    else:
        items = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        specs = [(item, 1.0, None) for item in items]
    stage = build_terms(specs, mode=config.reward.mode, timeout=config.reward.timeout)
    try:
        check_terms_for(config.algorithm.resolved, stage.describe())
    except RewardError:
        stage.close()
        raise
    return stage


def _check_device(config: OrealConfig) -> str | None:
    device = config.model.device
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only torch" if torch.version.cuda is None else "no visible GPU"
        raise BuildError(f"model.device=cuda, but this machine has {build}; use model.device=cpu")
    return None if device == "auto" else device


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks of a causal LM (or of its LoRA wrapper): the units FSDP shards."""
    decoder, _ = _decoder_and_head(model)
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    return list(layers) if layers is not None else []


def _load_policy(
    config: OrealConfig, model: Any, tokenizer: Any, runtime: Runtime
) -> tuple[nn.Module, Any]:
    if model is None or isinstance(model, str):
        name, _ = resolve_model(model or config.model.name_or_path)
        return load_policy(
            name,
            device=runtime.device,
            cache_dir=config.model.cache_dir,
            gradient_checkpointing=config.model.gradient_checkpointing,
        )
    if not isinstance(model, nn.Module):
        raise BuildError(f"model must be a name, a path or a PreTrainedModel, got {type(model)}")
    if tokenizer is None:
        from transformers import AutoTokenizer

        source = getattr(model.config, "_name_or_path", "") or ""
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError):
            raise BuildError(
                "pass tokenizer= with a model object whose tokenizer cannot be loaded from "
                f"its name_or_path ({source!r})"
            ) from None
    model.to(runtime.device)
    return model, prepare_tokenizer(tokenizer)


@dataclass
class Inputs:
    """What is validated before any model loads: reward terms, problems, template, device."""

    reward: RewardStage
    train: list[Problem]
    evaluation: list[Problem]

    def close(self) -> None:
        self.reward.close()


def check_inputs(
    config: OrealConfig,
    *,
    model: Any = None,
    reward_funcs: Any = None,
    train_dataset: Any = None,
    eval_dataset: Any = None,
) -> Inputs:
    """Every check that needs no model: the model path, the reward terms (user functions
    imported), the training and evaluation problems, the prompt template and the device."""
    if model is None or isinstance(model, str):  # a path that names nothing fails first
        resolve_model(model or config.model.name_or_path)
    reward = _reward_stage(config, reward_funcs)
    try:
        source = train_dataset if train_dataset is not None else config.data.train
        train = _problems(source, config, label="train_dataset", key="data.train")
        if not train:
            raise BuildError(f"the training data ({_name(source)}) holds no problem")
        eval_source = eval_dataset if eval_dataset is not None else config.data.eval
        evaluation = (
            _problems(eval_source, config, label="eval_dataset", key="data.eval")
            if eval_source is not None
            else []
        )
        get_template(config.data.template)
        _check_device(config)
    except BaseException:
        reward.close()
        raise
    return Inputs(reward, train, evaluation)


def build_components(
    config: OrealConfig,
    runtime: Runtime,
    inputs: Inputs,
    *,
    model: Any = None,
    tokenizer: Any = None,
    generator: Generator | None = None,
    resume: Checkpoint | None = None,
    resume_policy: Callable[[nn.Module], None] | None = None,
) -> Components:
    """Everything a run trains with (module docstring for the order), from checked inputs."""
    if config.model.param_dtype == "bfloat16":
        if runtime.distributed:
            raise BuildError(
                "model.param_dtype=bfloat16 runs in one process; under torchrun FSDP2 sets the "
                "compute dtype (bf16 parameters on GPU, autocast on CPU): leave it at float32"
            )
        if autocast_dtype(runtime.device) is None:
            raise BuildError(f"model.param_dtype=bfloat16: {runtime.device} has no bf16 compute")
    policy, tokenizer = _load_policy(config, model, tokenizer, runtime)
    limit = _prompt_limit(config, policy)
    train = fit_prompts(inputs.train, tokenizer, config, limit, label="training")
    evaluation = fit_prompts(inputs.evaluation, tokenizer, config, limit, label="evaluation")
    with torch.random.fork_rng():  # new weights (LoRA adapters) depend on the seed alone
        torch.manual_seed(derive_seed(config.train.seed, Purpose.INIT))
        components = _with_models(
            config,
            runtime,
            policy,
            tokenizer,
            generator=generator,
            resume=resume,
            resume_policy=resume_policy,
        )
    components.reward = inputs.reward
    components.train_problems, components.eval_problems = train, evaluation
    return components


def _with_models(
    config: OrealConfig,
    runtime: Runtime,
    policy: nn.Module,
    tokenizer: Any,
    *,
    generator: Generator | None,
    resume: Checkpoint | None,
    resume_policy: Callable[[nn.Module], None] | None,
) -> Components:
    """The reference, token RM, LoRA, resumed weights, rollout engine, sharding, optimizers."""
    algorithm = config.algorithm.resolved
    lora = config.model.lora
    backend = rollout_backend(config, runtime, policy) if generator is None else "given"
    if backend == "fast" and not runtime.distributed and lora.rank == 0:
        # its weights are a cast of the policy's: dropped for each update, rebuilt after it
        generator = RebuildableEngine(lambda: _own_engine(backend, config, policy, tokenizer))
    elif backend in ("fast", "vllm"):  # an engine with its own copy of the initial weights
        generator = _own_engine(backend, config, policy, tokenizer)
    # transformers generate under data parallelism needs an unsharded copy of its own
    plain_copy = copy.deepcopy(policy) if backend == "hf" and runtime.distributed else None
    reference = None
    if algorithm.needs_reference and lora.rank == 0:
        if config.model.param_dtype == "bfloat16":  # scored as the policy: bf16 copies
            reference = FrozenReference.copy_of(policy, param_dtype=torch.bfloat16)
        else:
            matmul_dtype = _reference_dtype(config, runtime, policy)
            reference = FrozenReference.copy_of(policy, matmul_dtype=matmul_dtype)
    token_rm = None
    if config.token_rm.enabled:
        token_rm = TokenRMTrainer(
            config.token_rm,
            policy,
            reference=reference,
            tokenizer=tokenizer,
            runtime=runtime,
            autocast=config.model.bf16_autocast,
            micro_batch_size=config.train.micro_batch_size,
            total_steps=config.train.steps,
            cache_dir=config.model.cache_dir,
            gradient_checkpointing=config.model.gradient_checkpointing,
        )
    if lora.rank > 0:
        settings = LoraSettings(lora.rank, lora.alpha, lora.dropout, lora.target_modules)
        policy = apply_lora(policy, settings)
        if algorithm.needs_reference:
            reference = FrozenReference.lora_base_of(policy)
    if resume_policy is not None:
        resume_policy(policy)
    shares = backend == "hf" and plain_copy is None  # generate on the policy module itself
    if generator is None:
        generator = HFGenerator(
            plain_copy if plain_copy is not None else policy,
            tokenizer,
            max_batch_size=config.rollout.max_batch_size,
            autocast=config.model.bf16_autocast,
        )
    runtime.shard(policy, decoder_layers(policy))
    if reference is not None and not reference.shared_with_policy:
        runtime.shard(reference.module, decoder_layers(reference.module))
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(trainable, config.optim, config.train.steps)
    if resume is not None:
        runtime.load_optimizer_state(policy, optimizer, resume.optimizers["policy"])
        restore_schedule(scheduler, resume.schedulers["policy"])
        if token_rm is not None:
            if resume.token_rm is None or "token_rm" not in resume.optimizers:
                raise BuildError("the checkpoint has no token RM state (the run had token_rm off)")
            token_rm.load(
                resume.token_rm, resume.optimizers["token_rm"], resume.schedulers["token_rm"]
            )
    return Components(
        algorithm=algorithm,
        policy=policy,
        tokenizer=tokenizer,
        reference=reference,
        token_rm=token_rm,
        generator=generator,
        generator_shares_policy=shares,
        optimizer=optimizer,
        scheduler=scheduler,
    )


def _reference_dtype(
    config: OrealConfig, runtime: Runtime, policy: nn.Module
) -> torch.dtype | None:
    """bf16 for the frozen reference's linear weights when it is scored under bf16 autocast
    (the same log-probs in half their memory; oreal.models.reference), else None (fp32)."""
    dtype = autocast_dtype(runtime.device, config.model.bf16_autocast)
    if dtype is None or not low_precision_reference_supported(policy):
        return None
    return dtype


def rollout_backend(config: OrealConfig, runtime: Runtime, policy: nn.Module) -> str:
    """``rollout.backend`` with ``auto`` resolved: vllm on GPU when installed, else hf on GPU;
    fast on CPU when the architecture is supported, else hf (with a warning)."""
    import importlib.util

    from oreal.rollout.llama_decoder import unsupported_reason

    backend = config.rollout.backend
    on_gpu = runtime.device.type == "cuda"
    if backend == "auto":
        if on_gpu:
            backend = "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
        else:
            backend = "fast"
    if backend == "fast":
        if on_gpu:
            raise BuildError("rollout.backend=fast runs on CPUs; use vllm or hf on a GPU")
        reason = unsupported_reason(policy)
        if reason is not None:
            if config.rollout.backend == "fast":
                raise BuildError(f"rollout.backend=fast does not support this model: {reason}")
            logger.warning("fast CPU rollouts do not support this model (%s); using hf", reason)
            backend = "hf"
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise BuildError("rollout.backend=vllm needs vllm: pip install 'oreal[vllm]'")
    if config.rollout.tis_cap is not None and backend == "hf":
        raise BuildError("rollout.tis_cap needs an engine that reports log-probs (fast, vllm)")
    return backend


def _own_engine(backend: str, config: OrealConfig, policy: nn.Module, tokenizer: Any) -> Generator:
    """The fast CPU engine or vLLM, built from the initial policy's weights."""
    if backend == "fast":
        from oreal.rollout import FastGenerator

        return FastGenerator(policy, tokenizer, max_batch_size=config.rollout.max_batch_size)
    import tempfile

    from oreal.models.loading import quiet_hf_progress
    from oreal.rollout.vllm import VLLMGenerator

    source = tempfile.mkdtemp(prefix="oreal-vllm-")  # the engine starts from these weights
    with quiet_hf_progress():
        policy.save_pretrained(source)
        tokenizer.save_pretrained(source)
    settings = config.rollout.vllm
    return VLLMGenerator(
        source,
        tokenizer,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_model_len=settings.max_model_len,
        seed=config.train.seed,
        engine_kwargs={"enforce_eager": settings.enforce_eager},
    )


def _prompt_limit(config: OrealConfig, policy: nn.Module) -> int | None:
    """``rollout.max_prompt_tokens``, else the context length minus the generation budget."""
    if config.rollout.max_prompt_tokens is not None:
        return config.rollout.max_prompt_tokens
    context = getattr(getattr(policy, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and context > config.rollout.max_new_tokens:
        return context - config.rollout.max_new_tokens
    return None


def fit_prompts(
    problems: list[Problem], tokenizer: Any, config: OrealConfig, limit: int | None, *, label: str
) -> list[Problem]:
    """Render every prompt once: the template must work (a chat template is there), and a
    prompt longer than ``limit`` tokens is skipped with a warning or refused
    (``rollout.long_prompts``). A question over 32 characters per allowed token is too long
    without tokenizing it (a 50 MB question must not be tokenized to find that out)."""
    if not problems:
        return problems
    if limit is None:
        render_prompt(problems[0], tokenizer, config.data.template)
        return problems
    short = [p for p in problems if len(p.question) <= 32 * limit]
    prompts = [render_prompt(p, tokenizer, config.data.template) for p in short]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    fitting = [p for p, n in zip(short, lengths, strict=True) if n <= limit]
    dropped = len(problems) - len(fitting)
    if dropped and config.rollout.long_prompts == "error":
        first = next(p for p in problems if p not in fitting)
        raise BuildError(
            f"{label} problem {first.id!r} has a prompt over {limit} tokens "
            "(rollout.max_prompt_tokens); rollout.long_prompts=skip drops such problems"
        )
    if dropped:
        logger.warning(
            "%s: skipped %d of %d problems whose prompt is over %d tokens",
            label, dropped, len(problems), limit,
        )  # fmt: skip
    if not fitting:
        raise BuildError(f"every {label} prompt is over {limit} tokens (rollout.max_prompt_tokens)")
    return fitting


def _name(source: Any) -> str:
    return source if isinstance(source, str) else type(source).__name__
