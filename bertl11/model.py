"""BERT for question answering, written once against the `Backend` protocol (`ops.py`).

`p` is the parameters tree from `weights.parameter_tree`, named like HF's state dict
(`p.bert.encoder.layer[i].attention.self.qkv`). The numbers are the seed encoder's 11 ops. One op per
statement; `ops.release(t)` follows a tensor's last use (the add+layernorms write over their residual,
the softmax over its scores, so those are not released apart).
"""

from __future__ import annotations

import math

from .config import BertShape
from .ops import Backend


def self_attention(ops: Backend, q, k_t, v, mask, scale: float):
    if ops.fuses_attention:
        context = ops.fused_attention(q, k_t, v, mask, scale)  # (3)-(5) in one kernel
        ops.release(q)
        ops.release(k_t)
    else:
        scores = ops.q_kt(q, k_t)  # (3)
        ops.release(q)
        ops.release(k_t)
        probs = ops.softmax(scores, mask, scale)  # (4)
        context = ops.attention_v(probs, v)  # (5)
        ops.release(probs)
    ops.release(v)
    return context


def attention(ops: Backend, x, mask, p, shape: BertShape):
    qkv = ops.qkv(x, p.self.qkv)  # (1)
    q, k_t, v = ops.split_heads(qkv, shape.num_heads)  # (2)
    ops.release(qkv)
    context = self_attention(ops, q, k_t, v, mask, 1.0 / math.sqrt(shape.head_size))
    merged = ops.concat_heads(context)  # (6)
    ops.release(context)
    projected = ops.self_output(merged, p.output.dense)  # (7)
    ops.release(merged)
    attended = ops.attention_add_layernorm(projected, x, p.output.LayerNorm, shape.layer_norm_eps)  # (8)
    ops.release(projected)
    return attended


def feed_forward(ops: Backend, x, p, shape: BertShape):
    hidden = ops.ff1_gelu(x, p.intermediate.dense)  # (9)
    projected = ops.ff2(hidden, p.output.dense)  # (10)
    ops.release(hidden)
    out = ops.ffn_add_layernorm(projected, x, p.output.LayerNorm, shape.layer_norm_eps)  # (11)
    ops.release(projected)
    return out


def encoder_layer(ops: Backend, x, mask, p, shape: BertShape):
    attended = attention(ops, x, mask, p.attention, shape)
    return feed_forward(ops, attended, p, shape)


def bert_qa(ops: Backend, p, input_ids, token_type_ids, attention_mask, shape: BertShape):
    """Start and end logits [B, S] for a batch of token ids."""
    batch, seq = input_ids.shape
    ops.begin_batch(batch, seq)
    x = ops.embeddings(input_ids, token_type_ids, p.bert.embeddings)
    mask = ops.attention_mask(attention_mask)
    for layer in p.bert.encoder.layer:
        x = encoder_layer(ops, x, mask, layer, shape)
    ops.release(mask)
    start, end = ops.qa_head(x, p.qa_outputs)
    ops.release(x)
    return start, end
