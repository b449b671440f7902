"""The torch backend: the op interface on CPU or CUDA tensors, in float32 or bfloat16.

`TorchOps` simulates the run configuration: its BFLOAT8_B tensors are rounded through the block-float format
(`bfp8.quantize`) and then held in the compute dtype, so the numbers match what the device stores.
`FastTorchOps` is the speed path (`QAModel.load(..., fast=True)`): int8 GEMMs on CPU for 8-bit configs,
fused attention, no per-op rounding; see its docstring and docs/performance.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import BFLOAT8_B, BFLOAT16, FLOAT32, BertShape, RunConfig, get_run_config
from ..model import bert_qa
from ..ops import OPS, Backend
from ..weights import parameter_tree

TORCH_DTYPES = {FLOAT32: torch.float32, BFLOAT16: torch.bfloat16}
# The seed clamps HF's extended attention mask to this value (finfo.min overflows in bf16 arithmetic).
MASK_VALUE = -100000.0
# Int8 linears: input channels per linear kept in float32, and the seeded batch that finds them.
OUTLIER_CHANNELS = 16
CALIBRATION_SEED = 11
CALIBRATION_LENGTH = 128


def round_to(t: torch.Tensor, dtype: str) -> torch.Tensor:
    """Round a tensor through a storage dtype, keeping its torch dtype."""
    if dtype == BFLOAT8_B:
        from .. import bfp8

        return bfp8.quantize(t).to(t.dtype)
    if dtype == BFLOAT16 and t.dtype != torch.bfloat16:
        return t.to(torch.bfloat16).to(t.dtype)
    return t


class TorchOps(Backend):
    """`Backend` for torch tensors. Activations are [B, S, H] in the compute dtype."""

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu"):
        self.shape = shape
        self.run_config = run_config
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[run_config.compute_dtype]
        self.gelu_approximate = "none" if shape.hidden_act == "gelu" else "tanh"

    def prepare(self, flat: dict[str, torch.Tensor]):
        """Model-layout tensors -> parameters tree on the device, in the compute dtype.

        The weight cache already holds every tensor in its config dtype's values (BFLOAT8_B ones decoded),
        so nothing is rounded again here.
        """
        return parameter_tree({name: t.to(self.device, self.dtype) for name, t in flat.items()})

    def synchronize(self) -> None:
        """Wait for queued kernels (CUDA runs asynchronously), so a timer measures finished work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        """The numerics in a few words, for reports."""
        return f"{self.run_config.name} simulated in {str(self.dtype).removeprefix('torch.')}"

    def _hold(self, tensor: str, t: torch.Tensor) -> torch.Tensor:
        """A named tensor (`ops.TENSORS`) as the device would hold it (e.g. BFLOAT8_B activations)."""
        return round_to(t, self.run_config.dtype_of(tensor))

    def _store(self, op: str, t: torch.Tensor) -> torch.Tensor:
        """An op's output as the device would hold it."""
        return self._hold(OPS[op].output, t)

    def _linear(self, x: torch.Tensor, p) -> torch.Tensor:
        return torch.addmm(p.bias, x.reshape(-1, x.shape[-1]), p.weight).view(*x.shape[:-1], -1)

    def embeddings(self, input_ids, token_type_ids, p):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = p.word_embeddings.weight[input_ids] + p.token_type_embeddings.weight[token_type_ids]
        x = x + p.position_embeddings.weight[positions]
        x = F.layer_norm(x, (x.shape[-1],), p.LayerNorm.weight, p.LayerNorm.bias, self.shape.layer_norm_eps)
        return self._store("embeddings", x)

    def attention_mask(self, attention_mask):
        mask = (1.0 - attention_mask.to(self.dtype)) * MASK_VALUE
        return self._hold("attention_mask", mask[:, None, None, :])

    def qkv(self, x, p):
        return self._store("qkv", self._linear(x, p))

    def split_heads(self, qkv, num_heads):
        batch, seq, _ = qkv.shape
        q, k, v = qkv.view(batch, seq, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k.transpose(-1, -2), v

    def q_kt(self, q, k_t):
        return self._store("q_kt", torch.matmul(q, k_t))

    def softmax(self, scores, mask, scale):
        return self._store("softmax", torch.softmax(scores * scale + mask, dim=-1))

    def attention_v(self, probs, v):
        return self._store("attention_v", torch.matmul(probs, v))

    def concat_heads(self, context):
        batch, heads, seq, head_size = context.shape
        return context.transpose(1, 2).reshape(batch, seq, heads * head_size)

    def self_output(self, x, p):
        return self._store("self_output", self._linear(x, p))

    @staticmethod
    def _add_layernorm(x, residual, p, eps):
        return F.layer_norm(x + residual, (x.shape[-1],), p.weight, p.bias, eps)

    def attention_add_layernorm(self, x, residual, p, eps):
        return self._store("attention_add_layernorm", self._add_layernorm(x, residual, p, eps))

    def ffn_add_layernorm(self, x, residual, p, eps):
        return self._store("ffn_add_layernorm", self._add_layernorm(x, residual, p, eps))

    def ff1_gelu(self, x, p):
        return self._store("ff1_gelu", F.gelu(self._linear(x, p), approximate=self.gelu_approximate))

    def ff2(self, x, p):
        return self._store("ff2", self._linear(x, p))

    def qa_head(self, x, p):
        logits = self._linear(x, p)
        return logits[..., 0], logits[..., 1]


def quantize_rows(x: torch.Tensor, skip_columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] float -> (int8 [M, K], float32 scale [M, 1]): symmetric, one scale per row (token).

    The `skip_columns` do not set the scale (they are computed in float elsewhere); they saturate.
    """
    magnitudes = x.abs().index_fill_(1, skip_columns, 0.0)
    scale = magnitudes.amax(dim=1, keepdim=True).float().clamp_(min=1e-12).div_(127.0)
    return (x / scale).round_().clamp_(-127, 127).to(torch.int8), scale


def quantize_columns(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, N] float -> (int8 [K, N], float32 scale [N]): symmetric, one scale per output column."""
    scale = w.abs().amax(dim=0).float().clamp_(min=1e-12).div_(127.0)
    return (w / scale).round_().to(torch.int8), scale


class _InputRecorder(TorchOps):
    """Float32 ops that record, per linear weight, the largest |value| each input channel reaches."""

    def __init__(self, shape: BertShape):
        super().__init__(shape, get_run_config("FLOAT32"))
        self.channel_max: dict[int, torch.Tensor] = {}

    def _linear(self, x, p):
        seen = x.reshape(-1, x.shape[-1]).abs().amax(dim=0)
        key = id(p.weight)
        self.channel_max[key] = torch.maximum(self.channel_max.get(key, seen), seen)
        return super()._linear(x, p)


def input_outliers(flat: dict[str, torch.Tensor], shape: BertShape, count: int) -> dict[str, torch.Tensor]:
    """For each encoder linear weight, the `count` input channels with the largest activations.

    Pretrained BERTs carry a few hidden channels whose values are 10-30x the rest, for any input: scaling
    each token by its largest value would leave the other channels a handful of int8 levels. The channels
    are found once from a float32 pass over seeded random tokens (they do not depend on the text).
    """
    recorder = _InputRecorder(shape)
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    ids = torch.randint(1000, shape.vocab_size, (2, CALIBRATION_LENGTH), generator=generator)
    token_types = (torch.arange(CALIBRATION_LENGTH) >= CALIBRATION_LENGTH // 4).long().expand(2, -1)
    with torch.inference_mode():
        bert_qa(recorder, parameter_tree(flat), ids, token_types, torch.ones_like(ids), shape)
    return {
        name: recorder.channel_max[id(t)].topk(count).indices.sort().values
        for name, t in flat.items()
        if id(t) in recorder.channel_max and name.startswith("bert.encoder.")
    }


class FastTorchOps(TorchOps):
    """`Backend` tuned for speed rather than for the device's numerics.

    - Weights are laid out once at load. On CPU, 8-bit weight configs (BFLOAT8_B) run their encoder
      linears as int8 x int8 -> int32 GEMMs (VNNI, 4x the float32 rate here): weights quantised per output
      column, activations per token at run time, except a few outlier input channels per linear
      (`input_outliers`), whose small slice of the product stays in float32. BFLOAT8_B is 8 bits too,
      but with one exponent per 16 values along the output axis, which an integer GEMM cannot factor out:
      these are not the device's values. Activations between GEMMs stay float32 (int32 accumulators
      dequantise to it, and without AMX a CPU runs bfloat16 no faster).
    - Op outputs are not rounded through the config's storage dtypes (no per-op BFLOAT8_B simulation).
    - Q.K^T, softmax and .V run as one fused kernel (`scaled_dot_product_attention` with the padding mask).
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu"):
        super().__init__(shape, run_config, device)
        self.int8_linears = self.device.type == "cpu" and run_config.weights == BFLOAT8_B
        if self.int8_linears:
            self.dtype = torch.float32

    def prepare(self, flat: dict[str, torch.Tensor]):
        if not self.int8_linears:
            return parameter_tree({name: t.to(self.device, self.dtype) for name, t in flat.items()})
        flat = {name: t.float() for name, t in flat.items()}
        outliers = input_outliers(flat, self.shape, OUTLIER_CHANNELS)
        prepared = {}
        for name, t in flat.items():
            if name in outliers:
                channels = outliers[name]
                prepared[name + "_outlier_channels"] = channels
                prepared[name + "_outlier_rows"] = t[channels].clone()
                prepared[name], prepared[name + "_scale"] = quantize_columns(t.index_fill(0, channels, 0.0))
            else:
                prepared[name] = t
        return parameter_tree(prepared)

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        if self.int8_linears:
            return f"int8 encoder linears (per-token x per-column, {OUTLIER_CHANNELS} float input channels), {dtype} elsewhere"
        return f"{dtype}, fused attention"

    def _hold(self, tensor: str, t: torch.Tensor) -> torch.Tensor:
        return t

    def _linear(self, x: torch.Tensor, p) -> torch.Tensor:
        if p.weight.dtype != torch.int8:
            return super()._linear(x, p)
        tokens = x.reshape(-1, x.shape[-1])
        rows, row_scale = quantize_rows(tokens, p.weight_outlier_channels)
        y = torch._int_mm(rows, p.weight).float().mul_(row_scale).mul_(p.weight_scale).add_(p.bias)
        y.addmm_(tokens[:, p.weight_outlier_channels], p.weight_outlier_rows)
        return y.view(*x.shape[:-1], -1)

    fuses_attention = True

    def fused_attention(self, q, k_t, v, mask, scale):
        """(3)-(5) in one kernel: softmax(Q.K^T * scale + mask) . V."""
        return F.scaled_dot_product_attention(q, k_t.transpose(-1, -2), v, attn_mask=mask, scale=scale)
