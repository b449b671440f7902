"""The torch backend: the op interface on CPU or CUDA tensors, in float32 or bfloat16.

`TorchOps` simulates the run configuration: every op output is the device's bfloat16 result rounded through
its storage dtype (BFLOAT8_B via `bfp8.quantize`), so the numbers match what the device stores. Where the
CPU has no fast bfloat16 GEMM (`machine.probe`), that arithmetic runs in float32 on the rounded values.
`FastTorchOps` is the speed path (`QAModel.load(..., fast=True)`): the fastest GEMM the machine has (int8 for
8-bit configs where an int8 kernel is fast), fused attention, no per-op rounding; see its docstring and
docs/performance.md.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .. import machine
from ..config import BFLOAT8_B, BFLOAT16, FLOAT32, BertShape, RunConfig, get_run_config
from ..model import bert_qa
from ..ops import OPS, Backend
from ..weights import parameter_tree, tensor_kind

TORCH_DTYPES = {FLOAT32: torch.float32, BFLOAT16: torch.bfloat16}
GEMM_KINDS = ("matmul_weights", "qa_head_weights")
# The seed clamps HF's extended attention mask to this value (finfo.min overflows in bf16 arithmetic).
MASK_VALUE = -100000.0
# Int8 linears: input channels per linear kept in float32, and the seeded batch that finds them.
OUTLIER_CHANNELS = 16
CALIBRATION_SEED = 11
CALIBRATION_LENGTH = 128


def round_to(t: torch.Tensor, dtype: str, held: torch.dtype | None = None) -> torch.Tensor:
    """Round a tensor through a storage dtype, held in torch dtype `held` (by default its own)."""
    held = held or t.dtype
    if dtype == BFLOAT8_B:
        from .. import bfp8

        return bfp8.quantize(t, held)
    if dtype == BFLOAT16 and t.dtype != torch.bfloat16:
        return t.to(torch.bfloat16).to(held)
    return t.to(held)


def gemm_dtype(run_config: RunConfig, device: torch.device) -> tuple[torch.dtype, str]:
    """The torch dtype a config's GEMMs run in on `device`, and why: float32 for FLOAT32; for the others
    bfloat16 on CUDA, and on CPU what `machine.probe` finds fast."""
    if run_config.compute_dtype == FLOAT32:
        return torch.float32, "the FLOAT32 config"
    if device.type != "cpu":
        return torch.bfloat16, f"native on {device.type}"
    choice = machine.probe().gemm_dtype()
    return TORCH_DTYPES[choice.kernel], choice.reason


class TorchOps(Backend):
    """`Backend` for torch tensors. Activations are [B, S, H], computed in `dtype`, held in `held_dtype`."""

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu"):
        self.shape = shape
        self.run_config = run_config
        self.torch_device = torch.device(device)
        self.dtype = TORCH_DTYPES[run_config.compute_dtype]
        # Where bfloat16 GEMMs are not native, they run in float32 on the bfloat16 operands: a bfloat16 x
        # bfloat16 product is exact in float32 and the sums accumulate in float32 either way, so only the
        # summation order differs. Everything else still computes in bfloat16 (elementwise kernels are fast
        # anywhere, and their roundings matter), but op outputs are held in the GEMM dtype: every stored
        # value is exact in it, and most outputs feed only GEMMs, which then need no conversion.
        self.gemm_dtype, self.gemm_reason = gemm_dtype(run_config, self.torch_device)
        self.held_dtype = self.gemm_dtype
        self.gelu_approximate = "none" if shape.hidden_act == "gelu" else "tanh"

    def prepare(self, flat: dict[str, torch.Tensor]):
        """Model-layout tensors -> parameters tree on the device, in the compute dtype.

        The weight cache already holds every tensor in its config dtype's values (BFLOAT8_B ones decoded),
        so nothing is rounded again here.
        """
        return parameter_tree({name: t.to(self.torch_device, self._dtype_of(name)) for name, t in flat.items()})

    def _dtype_of(self, name: str) -> torch.dtype:
        """GEMM operands (linear weights and biases) in the GEMM dtype, the rest in the compute dtype."""
        return self.gemm_dtype if tensor_kind(name) in GEMM_KINDS else self.dtype

    def synchronize(self) -> None:
        """Wait for queued kernels (CUDA runs asynchronously), so a timer measures finished work."""
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

    def describe(self) -> str:
        """The numerics in a few words, for reports."""
        gemm = "" if self.gemm_dtype == self.dtype else f", {str(self.gemm_dtype).removeprefix('torch.')} GEMMs"
        return f"{self.run_config.name} simulated in {str(self.dtype).removeprefix('torch.')}{gemm}"

    def kernel(self) -> str:
        """The GEMM this path runs and why, in one line."""
        return f"{str(self.gemm_dtype).removeprefix('torch.')} GEMMs ({self.gemm_reason})"

    def _hold(self, tensor: str, t: torch.Tensor) -> torch.Tensor:
        """A named tensor (`ops.TENSORS`) as the device would hold it (e.g. BFLOAT8_B activations)."""
        return round_to(t, self.run_config.dtype_of(tensor), self.held_dtype)

    def _store(self, op: str, t: torch.Tensor) -> torch.Tensor:
        """An op's output as the device would hold it."""
        return self._hold(OPS[op].output, t)

    # GEMM inputs are op outputs, already held in the GEMM dtype; the product is rounded to the compute dtype.
    def _linear(self, x: torch.Tensor, p) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        return torch.addmm(p.bias, tokens, p.weight).to(self.dtype).view(*x.shape[:-1], -1)

    def _matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b).to(self.dtype)

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
        return self._store("q_kt", self._matmul(q, k_t))

    def softmax(self, scores, mask, scale):
        scaled = scores.to(self.dtype) * scale
        masked = scaled + mask.to(self.dtype)
        return self._store("softmax", torch.softmax(masked, dim=-1))

    def attention_v(self, probs, v):
        return self._store("attention_v", self._matmul(probs, v))

    def concat_heads(self, context):
        batch, heads, seq, head_size = context.shape
        return context.transpose(1, 2).reshape(batch, seq, heads * head_size)

    def self_output(self, x, p):
        return self._store("self_output", self._linear(x, p))

    def _add_layernorm(self, x, residual, p, eps):
        total = x.to(self.dtype) + residual.to(self.dtype)
        return F.layer_norm(total, (x.shape[-1],), p.weight, p.bias, eps)

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


class IntMmLinear:
    """tokens [M, K] @ w [K, N] through `torch._int_mm` (oneDNN s8 x s8 -> s32, fast with VNNI or AMX).

    Weights are quantised per output column, activations per token at run time; the outlier input channels'
    slice of the product (K = len(outlier_channels)) stays in float32 and does not set a token's scale.
    """

    def __init__(self, w: torch.Tensor, outlier_channels: torch.Tensor):
        self.outlier_channels = outlier_channels
        self.outlier_rows = w[outlier_channels].clone()
        self.weight, self.scale = quantize_columns(w.index_fill(0, outlier_channels, 0.0))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        rows, row_scale = quantize_rows(tokens, self.outlier_channels)
        y = torch._int_mm(rows, self.weight).float().mul_(row_scale).mul_(self.scale)
        return y.addmm_(tokens[:, self.outlier_channels], self.outlier_rows)


class FbgemmLinear:
    """tokens [M, K] @ w [K, N] through fbgemm's dynamically quantised linear (`torch.ops.quantized`), the
    int8 kernel AVX2 CPUs run fast (u8 x s8 with 16-bit pair sums; `reduce_range` keeps activations to 7 bits
    so those sums never saturate, on every CPU alike).

    fbgemm gives a whole call one activation scale, so each token is first divided by its largest value
    (outlier channels aside): one scale then serves every token as a per-token scale would. Weights per
    output column; outlier input channels in float32, as in `IntMmLinear`.
    """

    def __init__(self, w: torch.Tensor, outlier_channels: torch.Tensor | None = None):
        self.outlier_channels = torch.empty(0, dtype=torch.long) if outlier_channels is None else outlier_channels
        self.outlier_rows = w[self.outlier_channels].clone()
        kept = w.float().index_fill(0, self.outlier_channels, 0.0)
        scale = kept.abs().amax(dim=0).clamp_(min=1e-12).div_(127.0).double()
        zero_points = torch.zeros(w.shape[1], dtype=torch.long)
        with warnings.catch_warnings(), quantized_engine("fbgemm"):
            warnings.simplefilter("ignore")  # torch deprecates quantized tensors, fbgemm's only way in
            qweight = torch.quantize_per_channel(kept.t().contiguous(), scale, zero_points, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        magnitudes = tokens.abs().index_fill_(1, self.outlier_channels, 0.0)
        row_scale = magnitudes.amax(dim=1, keepdim=True).clamp_(min=1e-12)
        normalised = tokens.div(row_scale).index_fill_(1, self.outlier_channels, 0.0)
        y = torch.ops.quantized.linear_dynamic(normalised, self.packed, True).mul_(row_scale)
        return y.addmm_(tokens[:, self.outlier_channels], self.outlier_rows)


@contextmanager
def quantized_engine(name: str):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


INT8_LINEARS = {"int_mm": IntMmLinear, "fbgemm": FbgemmLinear}


class FastTorchOps(TorchOps):
    """`Backend` tuned for speed rather than for the device's numerics.

    - Weights are laid out once at load. Float GEMMs run in the config's compute dtype (float32 for FLOAT32;
      otherwise bfloat16 on CUDA, and on CPU whichever of bfloat16 and float32 `machine.probe` finds faster).
    - On CPU, 8-bit weight configs (BFLOAT8_B) run their encoder linears through an int8 kernel where the
      machine has a fast one (`machine.Machine.int8_kernel`: `torch._int_mm` with VNNI/AMX, fbgemm on AVX2):
      weights quantised per output column, activations per token at run time, except a few outlier input
      channels per linear (`input_outliers`), whose small slice of the product stays in float32.
      BFLOAT8_B is 8 bits too, but with one exponent per 16 values along the output axis, which an integer
      GEMM cannot factor out: these are not the device's values. Activations between the int8 GEMMs stay
      float32 (int32 accumulators dequantise to it).
    - Op outputs are not rounded through the config's storage dtypes (no per-op BFLOAT8_B simulation).
    - Q.K^T, softmax and .V run as one fused kernel (`scaled_dot_product_attention` with the padding mask).
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu"):
        super().__init__(shape, run_config, device)
        self.int8 = machine.Choice("none", "not an 8-bit weight config" if run_config.weights != BFLOAT8_B
                                   else f"int8 GEMMs are a CPU choice, not taken on {self.torch_device.type}")
        if self.torch_device.type == "cpu" and run_config.weights == BFLOAT8_B:
            self.int8 = machine.probe().int8_kernel()
        if self.int8.kernel != "none":
            self.gemm_dtype = torch.float32
        self.dtype = self.held_dtype = self.gemm_dtype  # no per-op rounding here: everything in the GEMM dtype

    def prepare(self, flat: dict[str, torch.Tensor]):
        if self.int8.kernel == "none":
            return parameter_tree({name: t.to(self.torch_device, self.dtype) for name, t in flat.items()})
        flat = {name: t.float() for name, t in flat.items()}
        outliers = input_outliers(flat, self.shape, OUTLIER_CHANNELS)
        linear = INT8_LINEARS[self.int8.kernel]
        return parameter_tree({name: linear(t, outliers[name]) if name in outliers else t for name, t in flat.items()})

    def describe(self) -> str:
        if self.int8.kernel != "none":
            return (f"int8 encoder linears ({self.int8.kernel}, per-token x per-column, {OUTLIER_CHANNELS} float "
                    "input channels), float32 elsewhere")
        return f"{str(self.dtype).removeprefix('torch.')}, fused attention"

    def kernel(self) -> str:
        if self.int8.kernel != "none":
            return f"int8 {self.int8.kernel} encoder linears ({self.int8.reason})"
        if self.run_config.weights == BFLOAT8_B:
            return f"{super().kernel()}; no int8 ({self.int8.reason})"
        return super().kernel()

    def _hold(self, tensor: str, t: torch.Tensor) -> torch.Tensor:
        return t

    def _linear(self, x: torch.Tensor, p) -> torch.Tensor:
        if isinstance(p.weight, torch.Tensor):
            return super()._linear(x, p)
        return p.weight(x.reshape(-1, x.shape[-1])).add_(p.bias).view(*x.shape[:-1], -1)

    fuses_attention = True

    def fused_attention(self, q, k_t, v, mask, scale):
        """(3)-(5) in one kernel: softmax(Q.K^T * scale + mask) . V."""
        return F.scaled_dot_product_attention(q, k_t.transpose(-1, -2), v, attn_mask=mask, scale=scale)
