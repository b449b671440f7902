"""The torch backend: the op interface on CPU or CUDA tensors, in float32 or bfloat16.

`TorchOps` simulates the run configuration: every op output is the device's bfloat16 result rounded through
its storage dtype (BFLOAT8_B via `bfp8.quantize`), so the numbers match what the device stores. Where the
CPU has no fast bfloat16 GEMM (`machine.probe`), that arithmetic runs in float32 on the rounded values.
The speed path (`QAModel.load(..., fast=True)`) builds on it in `backends/fast.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import machine
from ..config import BFLOAT8_B, BFLOAT16, FLOAT32, BertShape, RunConfig
from ..ops import OPS, Backend
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
