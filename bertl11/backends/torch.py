"""The torch backend: the op interface on CPU or CUDA tensors, in float32 or bfloat16.

The run configuration's BFLOAT8_B tensors are simulated: their values are rounded through the block-float
format (`bfp8.quantize`) and then held in the compute dtype, so the numbers match what the device stores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import BFLOAT8_B, BFLOAT16, FLOAT32, BertShape, RunConfig
from ..weights import parameter_tree, tensor_kind

TORCH_DTYPES = {FLOAT32: torch.float32, BFLOAT16: torch.bfloat16}
# The seed clamps HF's extended attention mask to this value (finfo.min overflows in bf16 arithmetic).
MASK_VALUE = -100000.0


def round_to(t: torch.Tensor, dtype: str) -> torch.Tensor:
    """Round a tensor through a storage dtype, keeping its torch dtype."""
    if dtype == BFLOAT8_B:
        from .. import bfp8

        return bfp8.quantize(t).to(t.dtype)
    if dtype == BFLOAT16 and t.dtype != torch.bfloat16:
        return t.to(torch.bfloat16).to(t.dtype)
    return t


class TorchOps:
    """`Ops` for torch tensors. Activations are [B, S, H] in the compute dtype."""

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu"):
        self.shape = shape
        self.run_config = run_config
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[run_config.compute_dtype]
        self.gelu_approximate = "none" if shape.hidden_act == "gelu" else "tanh"

    def prepare(self, flat: dict[str, torch.Tensor]):
        """Model-layout float tensors -> parameters tree on the device, rounded to the config's dtypes."""
        return parameter_tree(
            {
                name: round_to(t.float(), self.run_config.dtype_of(tensor_kind(name))).to(self.device, self.dtype)
                for name, t in flat.items()
            }
        )

    def _store(self, tensor_name: str, t: torch.Tensor) -> torch.Tensor:
        """An op output as the device would hold it (e.g. BFLOAT8_B activations)."""
        return round_to(t, self.run_config.dtype_of(tensor_name))

    def _linear(self, x: torch.Tensor, p) -> torch.Tensor:
        return torch.addmm(p.bias, x.reshape(-1, x.shape[-1]), p.weight).view(*x.shape[:-1], -1)

    def embeddings(self, input_ids, token_type_ids, p):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = p.word_embeddings.weight[input_ids] + p.token_type_embeddings.weight[token_type_ids]
        x = x + p.position_embeddings.weight[positions]
        x = F.layer_norm(x, (x.shape[-1],), p.LayerNorm.weight, p.LayerNorm.bias, self.shape.layer_norm_eps)
        return self._store("qkv_input", x)

    def attention_mask(self, attention_mask):
        mask = (1.0 - attention_mask.to(self.dtype)) * MASK_VALUE
        return self._store("attention_mask", mask[:, None, None, :])

    def qkv(self, x, p):
        return self._store("qkv_output", self._linear(x, p))

    def split_heads(self, qkv, num_heads):
        batch, seq, _ = qkv.shape
        q, k, v = qkv.view(batch, seq, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k.transpose(-1, -2), v

    def q_kt(self, q, k_t):
        return self._store("q_kt_output", torch.matmul(q, k_t))

    def softmax(self, scores, mask, scale):
        return self._store("softmax_output", torch.softmax(scores * scale + mask, dim=-1))

    def attention_v(self, probs, v):
        return self._store("attention_v_output", torch.matmul(probs, v))

    def concat_heads(self, context):
        batch, heads, seq, head_size = context.shape
        return context.transpose(1, 2).reshape(batch, seq, heads * head_size)

    def self_output(self, x, p):
        return self._store("self_output_output", self._linear(x, p))

    def _add_layernorm(self, x, residual, p, eps):
        y = F.layer_norm(x + residual, (x.shape[-1],), p.weight, p.bias, eps)
        return self._store("layernorm_output", y)

    attention_add_layernorm = _add_layernorm
    ffn_add_layernorm = _add_layernorm

    def ff1_gelu(self, x, p):
        return self._store("ff1_output", F.gelu(self._linear(x, p), approximate=self.gelu_approximate))

    def ff2(self, x, p):
        return self._store("ff2_output", self._linear(x, p))

    def qa_head(self, x, p):
        logits = self._linear(x, p)
        return logits[..., 0], logits[..., 1]
