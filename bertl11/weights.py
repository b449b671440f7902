"""HF `BertForQuestionAnswering` state dict -> the model's parameters.

Names mirror HF's state dict so the two can be read side by side. Two things change on the way, both as
the seed does them: query/key/value are fused into one `attention.self.qkv` linear, and every linear weight
is transposed to [in_features, out_features] (the layout a device matmul consumes, `x @ W`).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import torch

from .config import BertShape
from .errors import UserError

QKV = ("query", "key", "value")
LINEARS = ("attention.output.dense", "intermediate.dense", "output.dense")
LAYERNORMS = ("attention.output.LayerNorm", "output.LayerNorm")
EMBEDDINGS = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def _take(state: dict, key: str) -> torch.Tensor:
    try:
        return state[key]
    except KeyError:
        raise UserError(f"weights lack {key!r}: not a BertForQuestionAnswering state dict") from None


def import_state_dict(state: dict, shape: BertShape) -> dict[str, torch.Tensor]:
    """Flat {name: float32 tensor} in the model's layout (QKV fused, linears transposed)."""
    params: dict[str, torch.Tensor] = {}
    for name in EMBEDDINGS:
        params[f"bert.embeddings.{name}.weight"] = _take(state, f"bert.embeddings.{name}.weight")
    for part in ("weight", "bias"):
        params[f"bert.embeddings.LayerNorm.{part}"] = _take(state, f"bert.embeddings.LayerNorm.{part}")
    for i in range(shape.num_layers):
        layer = f"bert.encoder.layer.{i}"
        params[f"{layer}.attention.self.qkv.weight"] = torch.cat(
            [_take(state, f"{layer}.attention.self.{n}.weight") for n in QKV], dim=0
        ).t()
        params[f"{layer}.attention.self.qkv.bias"] = torch.cat([_take(state, f"{layer}.attention.self.{n}.bias") for n in QKV])
        for linear in LINEARS:
            params[f"{layer}.{linear}.weight"] = _take(state, f"{layer}.{linear}.weight").t()
            params[f"{layer}.{linear}.bias"] = _take(state, f"{layer}.{linear}.bias")
        for norm in LAYERNORMS:
            for part in ("weight", "bias"):
                params[f"{layer}.{norm}.{part}"] = _take(state, f"{layer}.{norm}.{part}")
    params["qa_outputs.weight"] = _take(state, "qa_outputs.weight").t()
    params["qa_outputs.bias"] = _take(state, "qa_outputs.bias")
    return {name: t.detach().float().contiguous() for name, t in params.items()}


def tensor_kind(name: str) -> str:
    """Which of the run config's tensor classes a parameter belongs to (decides its dtype)."""
    if "embeddings" in name and "LayerNorm" not in name:
        return "embedding_weights"
    if "LayerNorm" in name:
        return "layernorm_weights"
    if name.startswith("qa_outputs"):
        return "qa_head_weights"
    return "matmul_weights"


# The linear each weight matrix belongs to: the op that multiplies by it (`ops.OPS`), by the weight's name.
LINEAR_OPS = {"attention.self.qkv.weight": "qkv", "attention.output.dense.weight": "self_output",
              "intermediate.dense.weight": "ff1_gelu", "output.dense.weight": "ff2", "qa_outputs.weight": "qa_head"}


def linear_op(name: str) -> str | None:
    """The op whose matmul takes parameter `name` as its weight matrix (in1), e.g. "ff2"; None for the rest.
    The longest matching name wins ("attention.output.dense.weight" also ends in "output.dense.weight")."""
    matches = [suffix for suffix in LINEAR_OPS if name == suffix or name.endswith("." + suffix)]
    return LINEAR_OPS[max(matches, key=len)] if matches else None


def storage_group(name: str) -> str:
    """Which file of a cache a parameter is stored in: one per encoder layer ("layer_07"), "embeddings", "qa_outputs"."""
    layer = re.match(r"bert\.encoder\.layer\.(\d+)\.", name)
    if layer:
        return f"layer_{int(layer.group(1)):02d}"
    return "embeddings" if name.startswith("bert.embeddings.") else "qa_outputs"


def parameter_tree(flat: dict) -> SimpleNamespace:
    """{"a.b.0.c": t} -> tree with `tree.a.b[0].c`, so model code reads like HF's module names."""
    root: dict = {}
    for name, value in flat.items():
        node = root
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def build(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [build(node[str(i)]) for i in range(len(node))]
        return SimpleNamespace(**{k: build(v) for k, v in node.items()})

    return build(root)
