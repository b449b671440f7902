"""The op interface the model is written against: one table of ops (`OPS`) and the `Backend` protocol.

`OPS` holds one `OpSpec` per op (the seed encoder's 11, plus embeddings and the QA head); names, titles,
output tensor names, kinds, K dimensions and the encoder's dataflow are read from it everywhere (the plan,
the profiler, the torch backend's rounding, the run config's dtype table). A backend (torch, ttnn, the grid
emulator) implements `Backend` on its own tensor type; `model.py` only calls it. Shapes in the docstrings are
for BERT-large (B batch, S=384 sequence, H=1024 hidden, N=16 heads, D=64 head size, F=4096 FFN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol

Tensor = Any  # the backend's tensor type

# What an op does, which decides its program config and its FLOP count.
EMBEDDING, LINEAR, BATCHED_MATMUL, DATA_MOVEMENT, SOFTMAX, LAYERNORM, HEAD = (
    "embedding", "linear", "batched matmul", "data movement", "softmax", "layernorm", "head",
)
# Dimensions an op's output and K are measured in (attributes of `plan.EncoderShape` and its per-batch counts).
TOKENS, HEAD_ROWS, QKV_HEAD_ROWS = "tokens", "head_rows", "qkv_head_rows"
# The encoder layer's input, as the dataflow names it (held for the first residual add).
LAYER_INPUT = "input"


@dataclass(frozen=True)
class OpSpec:
    """One op of the model.

    output:   the run config's name for the tensor it writes (decides that tensor's dtype)
    rows, columns: its output as a 2D matrix (attention outputs folded over batch x heads), in named dimensions
    k:        the dimension its matmul sums over (matmuls only)
    inputs:   the tensors it reads (op names; `LAYER_INPUT` for the layer's input)
    held:     tensors kept alive across it for a later residual add (they occupy memory while it runs)
    in_place: it writes its output over an input (softmax: the scores; add+layernorm: the residual)
    """

    name: str
    title: str
    kind: str
    output: str | None
    rows: str | None = None
    columns: str | None = None
    k: str | None = None
    activation: str | None = None
    inputs: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    in_place: bool = False

    @property
    def per_head(self) -> bool:
        """Its output rows are (batch x heads x sequence), not tokens: attention holds whole rows per head."""
        return self.rows in (HEAD_ROWS, QKV_HEAD_ROWS)


OPS: dict[str, OpSpec] = {
    op.name: op
    for op in (
        OpSpec("embeddings", "embeddings", EMBEDDING, "qkv_input"),
        OpSpec("qkv", "QKV", LINEAR, "qkv_output", TOKENS, "qkv_width", "hidden", inputs=(LAYER_INPUT,)),
        # split_heads stands for Q, K^T and V together in the dataflow.
        OpSpec("split_heads", "split heads", DATA_MOVEMENT, "qkv_output", QKV_HEAD_ROWS, "head_size",
               inputs=("qkv",), held=(LAYER_INPUT,)),
        OpSpec("q_kt", "QK^T", BATCHED_MATMUL, "q_kt_output", HEAD_ROWS, "seq", "head_size",
               inputs=("split_heads",), held=(LAYER_INPUT,)),
        OpSpec("softmax", "softmax", SOFTMAX, "softmax_output", HEAD_ROWS, "seq",
               inputs=("q_kt",), held=(LAYER_INPUT, "split_heads"), in_place=True),
        OpSpec("attention_v", "attention.V", BATCHED_MATMUL, "attention_v_output", HEAD_ROWS, "head_size", "seq",
               inputs=("softmax",), held=(LAYER_INPUT, "split_heads")),
        OpSpec("concat_heads", "concat heads", DATA_MOVEMENT, "attention_v_output", TOKENS, "hidden",
               inputs=("attention_v",), held=(LAYER_INPUT,)),
        OpSpec("self_output", "self-output", LINEAR, "self_output_output", TOKENS, "hidden", "hidden",
               inputs=("concat_heads",), held=(LAYER_INPUT,)),
        OpSpec("attention_add_layernorm", "add+layernorm", LAYERNORM, "layernorm_output", TOKENS, "hidden",
               inputs=("self_output", LAYER_INPUT), in_place=True),
        OpSpec("ff1_gelu", "FF1+GELU", LINEAR, "ff1_output", TOKENS, "intermediate", "hidden", activation="gelu",
               inputs=("attention_add_layernorm",)),
        OpSpec("ff2", "FF2", LINEAR, "ff2_output", TOKENS, "hidden", "intermediate",
               inputs=("ff1_gelu",), held=("attention_add_layernorm",)),
        OpSpec("ffn_add_layernorm", "add+layernorm", LAYERNORM, "layernorm_output", TOKENS, "hidden",
               inputs=("ff2", "attention_add_layernorm"), in_place=True),
        OpSpec("qa_head", "QA head", HEAD, None),
    )
}
# The encoder layer's 11 ops in execution order, as the seed's profiler report numbers them.
ENCODER = tuple(op for op in OPS.values() if op.kind not in (EMBEDDING, HEAD))
ENCODER_OPS = tuple(op.name for op in ENCODER)
# Tensors a run config gives a dtype: what the ops write, the additive mask, and the parameter kinds
# (`weights.tensor_kind`).
WEIGHT_TENSORS = ("matmul_weights", "layernorm_weights", "embedding_weights", "qa_head_weights")
TENSORS = frozenset({op.output for op in OPS.values() if op.output} | {"attention_mask"} | set(WEIGHT_TENSORS))


def op_label(name: str) -> str:
    """The seed's op name, numbered for encoder ops: "(4) softmax"."""
    if name in ENCODER_OPS:
        return f"({ENCODER_OPS.index(name) + 1}) {OPS[name].title}"
    return OPS[name].title


class Backend(Protocol):
    """What `model.py` calls. Backends subclass it, so the members with a default here are optional.

    Memory: the model calls `release(t)` after a tensor's last use; a backend that owns device memory frees it
    there (ttnn), the others ignore it. An op never frees its inputs itself; `softmax` may write its output over
    the scores and an add+layernorm over the residual (`OpSpec.in_place`), so those are not released apart.
    """

    torch_device: Any  # the torch device the model hands inputs over on (the host for ttnn)
    card: Any = None  # the Tenstorrent card (`cards.Card`) a backend runs on, if any
    # What `prepare` did with the backend's own weight cache (.tensorbin files, int8 linears), in one line.
    cache_detail: str = ""
    fuses_attention: ClassVar[bool] = False  # runs (3)-(5) as one kernel: `fused_attention`

    def prepare(self, flat: dict) -> Any:
        """Model-layout tensors from the weight cache -> this backend's parameters tree (`weights.parameter_tree`)."""

    def begin_batch(self, batch: int, seq: int) -> None:
        """Called before a batch's embeddings: a backend whose placement depends on the shape derives it here."""

    def synchronize(self) -> None:
        """Wait for queued kernels, so a timer measures finished work (asynchronous backends: CUDA, ttnn)."""

    def describe(self) -> str:
        """The numerics in a few words, for reports."""
        raise NotImplementedError

    def kernel(self) -> str | None:
        """The GEMM kernel this backend chose and why, in one line (`bertl11 perf`); None where it has no choice."""
        return None

    def peak_kernel(self) -> str | None:
        """The probe's name for the kernel this backend's GEMMs run (`machine.Machine.rates`), whose measured
        rate is the peak `bertl11 perf` reports utilisation against; None where the probe has none."""
        return None

    def release(self, t: Tensor) -> None:
        """`t` is no longer used by the model."""

    def close(self) -> None:
        """Give the device back."""

    def forward(self, model: Callable, params, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor,
                shape) -> tuple[Tensor, Tensor]:
        """The whole `model` (`model.bert_qa`, written against this interface) on one batch, op by op; a backend
        that replays a captured graph (ttnn's traces) overrides it."""
        return model(self, params, input_ids, token_type_ids, attention_mask, shape)

    def forward_stream(self, model: Callable, params, batches: Iterable[tuple[Tensor, Tensor, Tensor]],
                       shape) -> Iterator[tuple[Tensor, Tensor]]:
        """Start and end logits of each (input_ids, token_type_ids, attention_mask) batch, in order. A backend that
        overlaps batches (ttnn's traced forward reads each batch's logits while the next one runs) overrides it."""
        for input_ids, token_type_ids, attention_mask in batches:
            yield self.forward(model, params, input_ids, token_type_ids, attention_mask, shape)

    def embeddings(self, input_ids: Tensor, token_type_ids: Tensor, p) -> Tensor:
        """word + token type + position embeddings, then layernorm: ids [B, S] -> [B, S, H]."""
        raise NotImplementedError

    def attention_mask(self, attention_mask: Tensor) -> Tensor:
        """1/0 padding mask [B, S] -> the additive mask the softmax adds (0 keep, large negative drop)."""
        raise NotImplementedError

    def qkv(self, x: Tensor, p) -> Tensor:
        """(1) fused QKV linear with bias: [B, S, H] -> [B, S, 3H]."""
        raise NotImplementedError

    def split_heads(self, qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
        """(2) split QKV and heads: -> Q [B, N, S, D], K^T [B, N, D, S], V [B, N, S, D]."""
        raise NotImplementedError

    def q_kt(self, q: Tensor, k_t: Tensor) -> Tensor:
        """(3) attention scores Q.K^T: -> [B, N, S, S]."""
        raise NotImplementedError

    def softmax(self, scores: Tensor, mask: Tensor, scale: float) -> Tensor:
        """(4) softmax(scores * scale + mask) over the last axis."""
        raise NotImplementedError

    def attention_v(self, probs: Tensor, v: Tensor) -> Tensor:
        """(5) probs . V: -> [B, N, S, D]."""
        raise NotImplementedError

    def fused_attention(self, q: Tensor, k_t: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
        """(3)-(5) in one kernel, where `fuses_attention`: softmax(Q.K^T * scale + mask) . V."""
        raise NotImplementedError

    def concat_heads(self, context: Tensor) -> Tensor:
        """(6) [B, N, S, D] -> [B, S, H]."""
        raise NotImplementedError

    def self_output(self, x: Tensor, p) -> Tensor:
        """(7) self-output linear with bias: [B, S, H] -> [B, S, H]."""
        raise NotImplementedError

    def attention_add_layernorm(self, x: Tensor, residual: Tensor, p, eps: float) -> Tensor:
        """(8) layernorm(x + residual)."""
        raise NotImplementedError

    def ff1_gelu(self, x: Tensor, p) -> Tensor:
        """(9) FF1 linear with bias and fused GELU: [B, S, H] -> [B, S, F]."""
        raise NotImplementedError

    def ff2(self, x: Tensor, p) -> Tensor:
        """(10) FF2 linear with bias: [B, S, F] -> [B, S, H]."""
        raise NotImplementedError

    def ffn_add_layernorm(self, x: Tensor, residual: Tensor, p, eps: float) -> Tensor:
        """(11) layernorm(x + residual)."""
        raise NotImplementedError

    def qa_head(self, x: Tensor, p) -> tuple[Tensor, Tensor]:
        """QA head linear: [B, S, H] -> start logits [B, S], end logits [B, S]."""
        raise NotImplementedError
