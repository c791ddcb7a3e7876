"""A Llama-family decoder for CPU rollouts: its own weight copy and a preallocated KV cache.

Why not transformers' module with ``StaticCache``? Under bf16 autocast every forward re-casts
all fp32 weights to bf16 (135M parameters: 0.5 GB read, 0.27 GB written per decoding step),
``torch.compile`` of the decode step took 175 s to compile and then ran 2.6 s per step against
0.1 s eager (measured here), and transformers' attention is not batch-invariant (below). So:
bf16 weights kept across steps, q/k/v and gate/up fused into one matmul each, and the few ops
per layer a decoding step needs.

Numerics follow transformers under CPU bf16 autocast (the trainer's and ``HFGenerator``'s
setting): fp32 embeddings, RMSNorm and residual stream; bf16 matmuls (q/k/v, o, gate/up, down,
lm_head) with bf16 outputs; rotary in fp32 on bf16 q/k; bf16-rounded q/k/v into attention.
Attention differs in kernel only, chosen so that a row's numbers do not depend on the rest of
the batch (what keyed sampling needs to give the same tokens at any batch size): a prefill
runs SDPA per prompt, unpadded; a decode step runs two fp32 matmuls over a left-aligned cache
(see :meth:`LlamaDecoder.decode`). With ``matmul_dtype=torch.float32`` every op is fp32
(transformers without autocast).

Supported: ``LlamaForCausalLM`` and ``Qwen2ForCausalLM`` (q/k/v bias) with full attention and
a position-independent rotary table (default, linear, llama3, yarn scalings).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers import PreTrainedModel

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "KVCache",
    "LlamaDecoder",
    "strip_wrapper_prefixes",
    "unsupported_reason",
]

#: The decode step's attention span (and the cache length) is a multiple of this: CPU fp32
#: matmuls over a span of 16k columns give the same sums whatever k (zero weights past a row's
#: end), while other spans change the last bits of the softmax normaliser (measured for spans
#: 16-1024 against 1024, 1 and 2 threads; e.g. a span of 54 or 70 differs from 64 or 128).
_SPAN_MULTIPLE = 16

SUPPORTED_ARCHITECTURES: frozenset[str] = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM"})
#: Rotary scalings whose inverse frequencies do not depend on the sequence length.
_STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})
#: Prefixes that wrappers (torch.compile, DDP, FSDP1) put in front of parameter names.
_WRAPPER_PREFIXES = (
    "_orig_mod.",
    "module.",
    "_fsdp_wrapped_module.",
    "_checkpoint_wrapped_module.",
)


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why ``model`` cannot run on :class:`LlamaDecoder`, or ``None`` when it can."""
    config = model.config
    name = type(model).__name__
    if name not in SUPPORTED_ARCHITECTURES:
        return f"{name} is not one of {sorted(SUPPORTED_ARCHITECTURES)}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act={config.hidden_act!r} (only silu)"
    if getattr(config, "mlp_bias", False):
        return "mlp_bias=True"
    if getattr(config, "use_sliding_window", False):
        return "sliding-window attention"
    layer_types = getattr(config, "layer_types", None) or []
    if any(kind != "full_attention" for kind in layer_types):
        return f"layer types {sorted(set(layer_types))} (only full_attention)"
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    rope_type = getattr(rotary, "rope_type", None)
    if rotary is None or rope_type not in _STATIC_ROPE_TYPES:
        return f"rotary embedding type {rope_type!r}"
    return None


@dataclass
class KVCache:
    """Keys and values of every layer, allocated once and reused while a call's rows x length
    fit (a static cache). Keys are stored transposed, ``[layers, rows, kv_heads, head_dim,
    length]`` in fp32, so that a decode step's scores are one matmul over contiguous columns;
    values ``[layers, rows, kv_heads, length, head_dim]`` in the matmul dtype, which they are
    rounded to anyway (see :meth:`LlamaDecoder.decode`)."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def rows(self) -> int:
        return self.values.shape[1]

    @property
    def length(self) -> int:
        return self.values.shape[3]

    def copy_rows(self, source_rows: torch.Tensor, columns: int) -> None:
        """Row ``r`` becomes old row ``source_rows[r]`` (first ``columns`` columns): expands a
        prefilled prompt to its K samples, or compacts away finished rows."""
        n = len(source_rows)
        for layer in range(self.values.shape[0]):
            # Advanced indexing materialises the gathered rows before the write, so a
            # source row overwritten earlier in the same copy cannot be read back.
            self.keys[layer, :n, ..., :columns] = self.keys[layer, source_rows, ..., :columns]
            self.values[layer, :n, :, :columns] = self.values[layer, source_rows, :, :columns]


class LlamaDecoder:
    """Forward passes of a Llama/Qwen2 causal LM on weights it owns (see the module docstring).

    :meth:`load_weights` refreshes the copy in place from a module or a state dict; buffers keep
    their storage, so a step costs one cast-and-copy per tensor.
    """

    def __init__(self, model: PreTrainedModel, *, matmul_dtype: torch.dtype = torch.bfloat16):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"LlamaDecoder does not support this model: {reason}")
        config = model.config
        self.matmul_dtype = matmul_dtype
        self.layers = int(config.num_hidden_layers)
        self.hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(config, "head_dim", None) or self.hidden // self.heads)
        self.eps = float(config.rms_norm_eps)
        self.vocab = int(config.vocab_size)
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        self.qkv_bias = bool(getattr(config, "attention_bias", False)) or (
            type(model).__name__ == "Qwen2ForCausalLM"
        )
        rotary = model.model.rotary_emb
        self._inv_freq = rotary.inv_freq.detach().float().cpu().clone()
        self._rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        self._cos = self._sin = torch.empty(0, self.head_dim)

        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        inter = int(config.intermediate_size)
        fp32, mm = torch.float32, matmul_dtype
        self.embed = torch.empty(self.vocab, self.hidden, dtype=fp32)
        self.lm_head = torch.empty(self.vocab, self.hidden, dtype=mm)
        self.final_norm = torch.empty(self.hidden, dtype=fp32)
        self.attn_norm = [torch.empty(self.hidden, dtype=fp32) for _ in range(self.layers)]
        self.mlp_norm = [torch.empty(self.hidden, dtype=fp32) for _ in range(self.layers)]
        self.qkv = [torch.empty(q + 2 * kv, self.hidden, dtype=mm) for _ in range(self.layers)]
        self.qkv_b = [torch.empty(q + 2 * kv, dtype=mm) if self.qkv_bias else None] * self.layers
        if self.qkv_bias:
            self.qkv_b = [torch.empty(q + 2 * kv, dtype=mm) for _ in range(self.layers)]
        self.out = [torch.empty(self.hidden, q, dtype=mm) for _ in range(self.layers)]
        self.gate_up = [torch.empty(2 * inter, self.hidden, dtype=mm) for _ in range(self.layers)]
        self.down = [torch.empty(self.hidden, inter, dtype=mm) for _ in range(self.layers)]
        self._splits = (q, kv, kv)
        self.load_weights(model)

    # ----------------------------------------------------------------------------- weights

    def load_weights(self, source: torch.nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Copy (and cast) the weights of ``source``, a module or a full state dict, into place.

        State-dict keys may carry wrapper prefixes (``_orig_mod.``, ``module.``, FSDP1's) and
        values may be DTensors (FSDP2's full state dict): they are gathered with
        ``full_tensor()``.
        """
        raw = source.state_dict() if isinstance(source, torch.nn.Module) else source
        # names only: a lazy mapping (oreal.models.lora.MergedLoraState) is read one weight
        # at a time, each copied into place before the next is made
        keys = {strip_wrapper_prefixes(key): key for key in raw}

        def take(name: str) -> torch.Tensor:
            if name not in keys:
                raise KeyError(f"weight {name!r} missing from the state dict")
            value = raw[keys[name]]
            full = getattr(value, "full_tensor", None)
            return (full() if callable(full) else value).detach()

        with torch.no_grad():
            embed = take("model.embed_tokens.weight")
            self.embed.copy_(embed)
            untied_head = not self.tied and "lm_head.weight" in keys
            self.lm_head.copy_(take("lm_head.weight") if untied_head else embed)
            self.final_norm.copy_(take("model.norm.weight"))
            q, kv, _ = self._splits
            for i in range(self.layers):
                p = f"model.layers.{i}."
                self.attn_norm[i].copy_(take(p + "input_layernorm.weight"))
                self.mlp_norm[i].copy_(take(p + "post_attention_layernorm.weight"))
                spans = {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
                for part, (lo, hi) in spans.items():
                    self.qkv[i][lo:hi].copy_(take(f"{p}self_attn.{part}_proj.weight"))
                    bias = self.qkv_b[i]
                    if bias is not None:
                        bias[lo:hi].copy_(take(f"{p}self_attn.{part}_proj.bias"))
                self.out[i].copy_(take(p + "self_attn.o_proj.weight"))
                inter = self.down[i].shape[1]
                self.gate_up[i][:inter].copy_(take(p + "mlp.gate_proj.weight"))
                self.gate_up[i][inter:].copy_(take(p + "mlp.up_proj.weight"))
                self.down[i].copy_(take(p + "mlp.down_proj.weight"))

    # ----------------------------------------------------------------------------- compute

    def new_cache(self, rows: int, length: int) -> KVCache:
        """A zeroed cache: fp32 storage of the (in bf16 mode bf16-rounded) keys, so the
        decode step's scores are fp32 matmuls without re-casting the cache at every step, and
        the values in the matmul dtype."""
        length = _round_up(length, _SPAN_MULTIPLE)
        keys = torch.zeros(self.layers, rows, self.kv_heads, self.head_dim, length)
        values = torch.zeros(
            self.layers, rows, self.kv_heads, length, self.head_dim, dtype=self.matmul_dtype
        )
        return KVCache(keys, values)

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and *signed* sin (fp32) for ``positions``, from a table grown on demand.

        The table holds exactly what transformers' rotary module computes for each position,
        except that the first half of sin is negated: ``rotate_half(x) * sin`` equals
        ``swap_halves(x) * signed_sin`` bit for bit (a sign flip is exact), one op fewer.
        """
        needed = int(positions.max()) + 1
        if needed > self._cos.shape[0]:
            size = max(needed, 2 * self._cos.shape[0], 256)
            freqs = torch.arange(size, dtype=torch.float32)[:, None] * self._inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            self._cos, self._sin = emb.cos() * self._rope_scale, emb.sin() * self._rope_scale
            half = self.head_dim // 2
            self._sin[:, :half] = -self._sin[:, :half]
        return self._cos[positions], self._sin[positions]

    def _norm(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """transformers' RMSNorm on an fp32 stream, cast for the next matmul."""
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return (weight * (hidden * torch.rsqrt(variance + self.eps))).to(self.matmul_dtype)

    def _qkv(
        self, layer: int, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotated q, k and v of ``hidden`` ``[tokens, hidden]``: ``[tokens, heads, head_dim]``,
        rounded to the matmul dtype (what SDPA receives under autocast); q and k held in
        fp32, v in the matmul dtype."""
        tokens = hidden.shape[0]
        qkv = F.linear(
            self._norm(hidden, self.attn_norm[layer]), self.qkv[layer], self.qkv_b[layer]
        ).view(tokens, -1, self.head_dim)
        # q and k heads rotate together: x·cos + swap_halves(x)·signed_sin (see _rotary)
        rotated = self.heads + self.kv_heads
        qk = qkv[:, :rotated]
        swapped = qk.unflatten(-1, (2, self.head_dim // 2)).flip(-2).flatten(-2)
        qk = (qk * cos[:, None] + swapped * sin[:, None]).to(self.matmul_dtype).float()
        q, k = qk.split((self.heads, self.kv_heads), dim=1)
        return q, k, qkv[:, rotated:]

    def _mlp_and_output(self, layer: int, hidden: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        hidden = hidden + F.linear(attn.to(self.matmul_dtype), self.out[layer])
        gate, up = F.linear(self._norm(hidden, self.mlp_norm[layer]), self.gate_up[layer]).chunk(
            2, -1
        )
        return hidden + F.linear(F.silu(gate) * up, self.down[layer])

    def _logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self._norm(last_hidden, self.final_norm), self.lm_head).float()

    @torch.no_grad()
    def prefill(
        self, prompts: list[list[int]], cache: KVCache, rows: list[list[int]]
    ) -> torch.Tensor:
        """Run each prompt once and store its keys/values, left-aligned (column = position),
        in every cache row of ``rows[p]``; return fp32 next-token logits ``[prompts, vocab]``.

        Prompts are packed into one sequence for the matmuls (no padding) and attend only to
        themselves (causal SDPA per prompt), so a prompt's numbers do not depend on the others.
        """
        lengths = [len(p) for p in prompts]
        ids = torch.tensor([t for p in prompts for t in p])
        positions = torch.cat([torch.arange(n) for n in lengths])
        bounds = torch.tensor([0, *lengths]).cumsum(0).tolist()
        targets = [torch.tensor(r) for r in rows]
        hidden = F.embedding(ids, self.embed)
        cos, sin = self._rotary(positions)
        groups = self.heads // self.kv_heads
        for i in range(self.layers):
            q, k, v = self._qkv(i, hidden, cos, sin)
            outputs = []
            for p, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                pk, pv = k[lo:hi].transpose(0, 1), v[lo:hi].transpose(0, 1)
                cache.keys[i, targets[p], :, :, : hi - lo] = pk.transpose(1, 2)
                cache.values[i, targets[p], :, : hi - lo] = pv
                attn = F.scaled_dot_product_attention(
                    q[lo:hi].transpose(0, 1).to(self.matmul_dtype),
                    pk.repeat_interleave(groups, 0).to(self.matmul_dtype),
                    pv.repeat_interleave(groups, 0).to(self.matmul_dtype),
                    is_causal=True,
                    scale=self.head_dim**-0.5,
                )
                outputs.append(attn.transpose(0, 1).reshape(hi - lo, -1))
            hidden = self._mlp_and_output(i, hidden, torch.cat(outputs))
        return self._logits(hidden[torch.tensor(bounds[1:]) - 1])

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One step for cache rows ``0..len(tokens)``: token ``tokens[r]`` at position (= cache
        column) ``positions[r]``; returns fp32 next-token logits ``[rows, vocab]``.

        Attention runs as matmuls over the row's left-aligned cache; the span covers the
        longest row, rounded up to a multiple of 16, and shorter rows see exact zero weights
        past their end. Scores are fp32 (bf16-rounded q and k, as SDPA gets them under
        autocast, contracted over head_dim), the softmax is fp32, and its weights are rounded
        to the values' dtype for the weighted sum, which accumulates in fp32 and returns that
        dtype: what PyTorch's CPU flash-attention kernel does for bf16 inputs (its output is
        bf16 under autocast too). The weighted sum and the normaliser (a matmul with ones)
        contract over the span. The fp32 normaliser was measured not to change with the number
        of rows or with spans of 16k columns (other spans do change its last bits, hence the
        rounding); the bf16 weighted sum passes the same bitwise checks
        (``test_bf16_decoding_of_a_row_does_not_depend_on_the_batch_on_embedded_model``,
        ``benchmarks/sampling_invariance.py``), so a row's numbers
        do not depend on the others. SDPA's CPU kernel does change with the span (tested), and
        with a mask it was 3.5x slower here (a one-off measurement).

        A single row is computed as a pair (cache row 1 is free by this method's contract):
        one-row tensors take other kernels, whose last bits differ (measured: bf16 GEMM of the
        down projection, 576 x 1536, gave other values for 3 of 64 rows computed alone, none
        in batches of 2 to 16; and one-row reductions).
        """
        if tokens.shape[0] == 1 and cache.rows > 1:
            return self.decode(tokens.repeat(2), positions.repeat(2), cache)[:1]
        rows = tokens.shape[0]
        span = _round_up(int(positions.max()) + 1, _SPAN_MULTIPLE)
        row_index = torch.arange(rows)
        groups = self.heads // self.kv_heads
        batch = rows * self.kv_heads  # one small matmul per (row, kv head): [groups, span]
        # 0 where a row sees the column, -inf past its end; added by the scores' matmul
        hidden_columns = torch.arange(span)[None, :] > positions[:, None]  # [rows, span]
        mask = torch.zeros(rows, self.kv_heads, groups, span)
        mask.masked_fill_(hidden_columns[:, None, None, :], float("-inf"))
        mask = mask.view(batch, groups, span)
        hidden = F.embedding(tokens, self.embed)
        cos, sin = self._rotary(positions)
        scale = self.head_dim**-0.5
        ones = torch.ones(span, 1)
        for i in range(self.layers):
            q, k, v = self._qkv(i, hidden, cos, sin)
            cache.keys[i, row_index, :, :, positions] = k
            cache.values[i, row_index, :, positions] = v
            keys = cache.keys[i, :rows, :, :, :span].reshape(batch, self.head_dim, span)
            values = cache.values[i, :rows, :, :span].reshape(batch, span, self.head_dim)
            q = q.reshape(batch, groups, self.head_dim)
            scores = torch.baddbmm(mask, q, keys, alpha=scale)  # [rows * kv, groups, span]
            weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
            weights = (weights / torch.matmul(weights, ones)).to(values.dtype)
            attn = torch.bmm(weights, values)  # [rows * kv, groups, head_dim]
            hidden = self._mlp_and_output(i, hidden, attn.view(rows, -1))
        return self._logits(hidden)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def strip_wrapper_prefixes(name: str) -> str:
    """``name`` without the prefixes wrappers (torch.compile, DDP, FSDP1) add."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name
