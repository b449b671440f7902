"""The torch backend: the op interface on CPU or CUDA tensors, in float32 or bfloat16.

`TorchOps` simulates the run configuration: every op output is the device's bfloat16 result rounded through
its storage dtype (BFLOAT8_B via `bfp8.quantize`), so the numbers match what the device stores. Where the
CPU has no fast bfloat16 GEMM (`machine.probe`), that arithmetic runs in float32 on the rounded values.
`FastTorchOps` is the speed path (`QAModel.load(..., fast=True)`): the fastest GEMM the machine has (int8 for
8-bit configs where an int8 kernel is fast), fused attention, no per-op rounding; see its docstring and
docs/performance.md.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .. import machine, quantize
from ..config import BFLOAT8_B, BFLOAT16, FLOAT32, BertShape, RunConfig, get_run_config
from ..model import bert_qa
from ..ops import OPS, Backend
from ..verified import VerifiedDirectory
from ..weights import parameter_tree, tensor_kind

TORCH_DTYPES = {FLOAT32: torch.float32, BFLOAT16: torch.bfloat16}
GEMM_KINDS = ("matmul_weights", "qa_head_weights")
# The seed clamps HF's extended attention mask to this value (finfo.min overflows in bf16 arithmetic).
MASK_VALUE = -100000.0


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


def channel_maxima(flat: dict[str, torch.Tensor], input_ids, token_type_ids, attention_mask,
                   shape: BertShape) -> dict[str, torch.Tensor]:
    """For each linear weight of `flat` (float32), the largest |value| each of its input channels reaches in a
    float32 forward of the model on these inputs: what `quantize.input_outliers` calibrates from."""
    recorder = _InputRecorder(shape)
    with torch.inference_mode():
        bert_qa(recorder, parameter_tree(flat), input_ids, token_type_ids, attention_mask, shape)
    return {name: recorder.channel_max[id(t)] for name, t in flat.items() if id(t) in recorder.channel_max}


class FastTorchOps(TorchOps):
    """`Backend` tuned for speed rather than for the device's numerics.

    - Weights are laid out once at load. Float GEMMs run in the config's compute dtype (float32 for FLOAT32;
      otherwise bfloat16 on CUDA, and on CPU whichever of bfloat16 and float32 `machine.probe` finds faster).
    - On CPU, 8-bit weight configs (BFLOAT8_B) run their encoder linears through an int8 kernel where the
      machine has a fast one (`machine.Machine.int8_kernel`: `torch._int_mm` with VNNI/AMX, fbgemm on AVX2):
      weights quantised per output column, activations per token at run time, except a few outlier input
      channels per linear (`quantize.input_outliers`), whose small slice of the product stays in float32.
      The int8 weights and outlier channels are made once and kept in `int8_cache` (`quantize.py`).
      BFLOAT8_B is 8 bits too, but with one exponent per 16 values along the output axis, which an integer
      GEMM cannot factor out: these are not the device's values. Activations between the int8 GEMMs stay
      float32 (int32 accumulators dequantise to it).
    - Op outputs are not rounded through the config's storage dtypes (no per-op BFLOAT8_B simulation).
    - Q.K^T, softmax and .V run as one fused kernel (`scaled_dot_product_attention` with the padding mask).
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu",
                 int8_cache: VerifiedDirectory | None = None):
        """int8_cache: where the int8 linears are kept (`cache.int8_cache`); without one they are made at every load."""
        super().__init__(shape, run_config, device)
        self.int8_cache = int8_cache
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
        record = functools.partial(channel_maxima, shape=self.shape)
        linears, outcome = quantize.load_or_quantize(flat, self.shape, self.int8.kernel, record, self.int8_cache)
        self.cache_detail = outcome.detail if outcome is not None else ""
        return parameter_tree({**flat, **linears})

    def describe(self) -> str:
        if self.int8.kernel != "none":
            return (f"int8 encoder linears ({self.int8.kernel}, per-token x per-column, {quantize.OUTLIER_CHANNELS} float "
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
