"""BERT for question answering, written once against the op interface (`ops.py`).

`p` is the parameters tree from `weights.parameter_tree`, named like HF's state dict
(`p.bert.encoder.layer[i].attention.self.qkv`). The numbers are the seed encoder's 11 ops.
"""

from __future__ import annotations

import math

from .config import BertShape
from .ops import Ops


def self_attention(ops: Ops, q, k_t, v, mask, scale: float):
    fused = getattr(ops, "fused_attention", None)  # a backend may run (3)-(5) as one kernel
    if fused is not None:
        return fused(q, k_t, v, mask, scale)
    scores = ops.q_kt(q, k_t)  # (3)
    probs = ops.softmax(scores, mask, scale)  # (4)
    return ops.attention_v(probs, v)  # (5)


def attention(ops: Ops, x, mask, p, shape: BertShape):
    qkv = ops.qkv(x, p.self.qkv)  # (1)
    q, k_t, v = ops.split_heads(qkv, shape.num_heads)  # (2)
    context = ops.concat_heads(self_attention(ops, q, k_t, v, mask, 1.0 / math.sqrt(shape.head_size)))  # (6)
    return ops.attention_add_layernorm(ops.self_output(context, p.output.dense), x, p.output.LayerNorm, shape.layer_norm_eps)  # (7), (8)


def feed_forward(ops: Ops, x, p, shape: BertShape):
    hidden = ops.ff1_gelu(x, p.intermediate.dense)  # (9)
    return ops.ffn_add_layernorm(ops.ff2(hidden, p.output.dense), x, p.output.LayerNorm, shape.layer_norm_eps)  # (10), (11)


def encoder_layer(ops: Ops, x, mask, p, shape: BertShape):
    return feed_forward(ops, attention(ops, x, mask, p.attention, shape), p, shape)


def bert_qa(ops: Ops, p, input_ids, token_type_ids, attention_mask, shape: BertShape):
    """Start and end logits [B, S] for a batch of token ids."""
    x = ops.embeddings(input_ids, token_type_ids, p.bert.embeddings)
    mask = ops.attention_mask(attention_mask)
    for layer in p.bert.encoder.layer:
        x = encoder_layer(ops, x, mask, layer, shape)
    return ops.qa_head(x, p.qa_outputs)
