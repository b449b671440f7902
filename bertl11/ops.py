"""The op interface the model is written against: the seed encoder's 11 ops plus embeddings and QA head.

A backend (torch, ttnn) implements these methods on its own tensor type; `model.py` only calls them.
Each method's docstring gives shapes for BERT-large (B batch, S=384 sequence, H=1024 hidden,
N=16 heads, D=64 head size, F=4096 FFN).
"""

from __future__ import annotations

from typing import Any, Protocol

Tensor = Any  # the backend's tensor type

# The names the seed's profiler report and our `profile` command use, in execution order.
ENCODER_OPS = (
    "qkv", "split_heads", "q_kt", "softmax", "attention_v", "concat_heads",
    "self_output", "attention_add_layernorm", "ff1_gelu", "ff2", "ffn_add_layernorm",
)
OP_TITLES = {
    "embeddings": "embeddings",
    "qkv": "QKV",
    "split_heads": "split heads",
    "q_kt": "QK^T",
    "softmax": "softmax",
    "attention_v": "attention.V",
    "concat_heads": "concat heads",
    "self_output": "self-output",
    "attention_add_layernorm": "add+layernorm",
    "ff1_gelu": "FF1+GELU",
    "ff2": "FF2",
    "ffn_add_layernorm": "add+layernorm",
    "qa_head": "QA head",
}


class Ops(Protocol):
    def embeddings(self, input_ids: Tensor, token_type_ids: Tensor, p) -> Tensor:
        """word + token type + position embeddings, then layernorm: ids [B, S] -> [B, S, H]."""

    def attention_mask(self, attention_mask: Tensor) -> Tensor:
        """1/0 padding mask [B, S] -> the additive mask the softmax adds (0 keep, large negative drop)."""

    def qkv(self, x: Tensor, p) -> Tensor:
        """(1) fused QKV linear with bias: [B, S, H] -> [B, S, 3H]."""

    def split_heads(self, qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
        """(2) split QKV and heads: -> Q [B, N, S, D], K^T [B, N, D, S], V [B, N, S, D]."""

    def q_kt(self, q: Tensor, k_t: Tensor) -> Tensor:
        """(3) attention scores Q.K^T: -> [B, N, S, S]."""

    def softmax(self, scores: Tensor, mask: Tensor, scale: float) -> Tensor:
        """(4) softmax(scores * scale + mask) over the last axis."""

    def attention_v(self, probs: Tensor, v: Tensor) -> Tensor:
        """(5) probs . V: -> [B, N, S, D]."""

    def concat_heads(self, context: Tensor) -> Tensor:
        """(6) [B, N, S, D] -> [B, S, H]."""

    def self_output(self, x: Tensor, p) -> Tensor:
        """(7) self-output linear with bias: [B, S, H] -> [B, S, H]."""

    def attention_add_layernorm(self, x: Tensor, residual: Tensor, p, eps: float) -> Tensor:
        """(8) layernorm(x + residual)."""

    def ff1_gelu(self, x: Tensor, p) -> Tensor:
        """(9) FF1 linear with bias and fused GELU: [B, S, H] -> [B, S, F]."""

    def ff2(self, x: Tensor, p) -> Tensor:
        """(10) FF2 linear with bias: [B, S, F] -> [B, S, H]."""

    def ffn_add_layernorm(self, x: Tensor, residual: Tensor, p, eps: float) -> Tensor:
        """(11) layernorm(x + residual)."""

    def qa_head(self, x: Tensor, p) -> tuple[Tensor, Tensor]:
        """QA head linear: [B, S, H] -> start logits [B, S], end logits [B, S]."""
