"""The torch backend: the op interface on CPU or CUDA tensors, in float32 or bfloat16.

`TorchOps` simulates the run configuration: every op output is the device's bfloat16 result rounded through
its storage dtype (BFLOAT8_B via `bfp8.quantize`), so the numbers match what the device stores, and the
arithmetic is the Tensix core's (`fpu.py`): matmul operands cut to the bits the op's math fidelity multiplies,
the fused GELU, the softmax's exp and reciprocal in their approximate forms, results rounded where the card
rounds them (with `exact_accumulation`, at every matrix-engine step). Where the CPU has no fast bfloat16 GEMM
(`machine.probe`), that arithmetic runs in float32 on the rounded values. The FLOAT32 config is the exact
reference: none of the card's arithmetic.
The speed path (`QAModel.load(..., fast=True)`) builds on it in `backends/fast.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import fpu, machine
from ..cards import CARDS
from ..config import BFLOAT8_B, BFLOAT16, FLOAT32, BertShape, RunConfig
from ..errors import UserError
from ..ops import BATCHED_MATMUL, LAYER_INPUT, LINEAR, OPS, Backend
from ..plan.derive import hidden_groups
from ..plan.types import EncoderShape
from ..weights import linear_op, parameter_tree, tensor_kind

TORCH_DTYPES = {FLOAT32: torch.float32, BFLOAT16: torch.bfloat16}
GEMM_KINDS = ("matmul_weights", "qa_head_weights")
# The seed clamps HF's extended attention mask to this value (finfo.min overflows in bf16 arithmetic).
MASK_VALUE = -100000.0
# The tensors each matmul's in0 (its activations) can be: what the op before it writes (`OpSpec.inputs`); the
# encoder's input is the embeddings' or the previous layer's output; the QA head reads the last layer's.
IN0_TENSORS = {
    op.name: ({OPS["embeddings"].output, OPS["ffn_add_layernorm"].output} if op.inputs[0] == LAYER_INPUT
              else {OPS[op.inputs[0]].output})
    for op in OPS.values() if op.kind in (LINEAR, BATCHED_MATMUL)
} | {"qa_head": {OPS["ffn_add_layernorm"].output}}
# With exact accumulation, a linear's K runs in as many blocks as the plan gives it on this card (one per hidden
# group: the K a core holds); the batched attention matmuls and the QA head take K in one block.
ACCUMULATION_CARD = "n150"


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
    """`Backend` for torch tensors. Activations are [B, S, H], computed in `dtype`, held in `held_dtype`.

    arithmetic: the config whose compute settings (`RunConfig.compute`) the ops follow, by default `run_config`;
    FLOAT32's mean exact arithmetic (the fast path, and the reference).
    exact_accumulation: round a bfloat16 destination at every matrix-engine step (`fpu.dst_matmul`), and the
    softmax's row sums tile by tile, rather than once per result; slow.
    dtype: compute, GEMM and held dtype instead of the config's. The grid emulator and its test run FLOAT32
    storage with a card config's arithmetic in float64: the operand cuts and the approximations, without the
    destination's roundings, so that sums of cut operands come out the same in any order.
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu",
                 exact_accumulation: bool = False, arithmetic: RunConfig | None = None, dtype: torch.dtype | None = None):
        self.shape = shape
        self.run_config = run_config
        self.torch_device = torch.device(device)
        self.dtype = dtype or TORCH_DTYPES[run_config.compute_dtype]
        # Each op's compute settings; None throughout for exact arithmetic.
        self.compute = {op: (arithmetic or run_config).compute(op) for op in OPS}
        if exact_accumulation and not (any(self.compute.values()) and self.dtype == torch.bfloat16):
            raise UserError(f"exact accumulation simulates a card's bfloat16 destination; {run_config.name} computes "
                            "exactly (choose a Tenstorrent config, without --fast)")
        self.exact_accumulation = exact_accumulation
        self.k_groups = hidden_groups(EncoderShape.from_bert(shape), max(CARDS[ACCUMULATION_CARD].grid))
        self.cut_weights: set[str] = set()  # ops whose weights hold only their SrcA high part (LoFi, cut at load)
        # Ops whose in0 is held in BFLOAT8_B: at most 7 significant bits, all in SrcB's high part, so never cut.
        self.block_float_in0 = {op for op, tensors in IN0_TENSORS.items()
                                if all(run_config.dtype_of(t) == BFLOAT8_B for t in tensors)}
        # Where bfloat16 GEMMs are not native, they run in float32 on the bfloat16 operands: a bfloat16 x
        # bfloat16 product is exact in float32 and the sums accumulate in float32 either way, so only the
        # summation order differs. Everything else still computes in bfloat16 (elementwise kernels are fast
        # anywhere, and their roundings matter), but op outputs are held in the GEMM dtype: every stored
        # value is exact in it, and most outputs feed only GEMMs, which then need no conversion.
        self.gemm_dtype, self.gemm_reason = (dtype, "set by the caller") if dtype else gemm_dtype(run_config, self.torch_device)
        self.held_dtype = self.gemm_dtype
        self.gelu_approximate = "none" if shape.hidden_act == "gelu" else "tanh"

    def prepare(self, flat: dict[str, torch.Tensor]):
        """Model-layout tensors -> parameters tree on the device, in the compute dtype.

        The weight cache already holds every tensor in its config dtype's values (BFLOAT8_B ones decoded),
        so nothing is rounded again here. The weights of LoFi matmuls are cut to their SrcA high part once,
        here: the only bits that fidelity multiplies.
        """
        params = {name: t.to(self.torch_device, self._dtype_of(name)) for name, t in flat.items()}
        for name, t in params.items():
            op = linear_op(name)
            if op is not None and self.compute[op] is not None and self.compute[op].math_fidelity == "LoFi":
                params[name] = fpu.high_part(t, fpu.SRC_A)
                self.cut_weights.add(op)
        return parameter_tree(params)

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
        fidelities = sorted({s.math_fidelity for op, s in self.compute.items() if s and OPS[op].kind == LINEAR})
        matmuls = f", {'/'.join(fidelities)} matmuls" if fidelities else ""
        exact = ", exact accumulation" if self.exact_accumulation else ""
        return f"{self.run_config.name} simulated in {str(self.dtype).removeprefix('torch.')}{gemm}{matmuls}{exact}"

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

    # ------------------------------------------------------------------ the card's arithmetic (`fpu.py`)

    def _bfloat16_dst(self, op: str) -> bool:
        """Whether `op`'s destination holds bfloat16: no fp32 accumulation, and computing in bfloat16."""
        return not self.compute[op].fp32_dest_acc_en and self.dtype == torch.bfloat16

    def _dst(self, op: str, t: torch.Tensor) -> torch.Tensor:
        """A result as `op`'s destination register holds it, in the compute dtype: rounded to bfloat16 (with
        exact accumulation as the hardware rounds, `fpu.round_dst`), or not at all in a float32 destination."""
        if self.exact_accumulation and self._bfloat16_dst(op):
            return fpu.round_dst(t).to(self.dtype)
        return t.to(self.dtype)

    def _wide(self, t: torch.Tensor) -> torch.Tensor:
        """An FPU operand (a value the compute dtype holds exactly) before an elementwise op whose result `_dst`
        rounds: float32 with exact accumulation, so that `fpu.round_dst` does the rounding; otherwise in the
        compute dtype, whose arithmetic computes in float32 and rounds once."""
        return t.float() if self.exact_accumulation else t.to(self.dtype)

    def _sfpu(self, op: str, fn, x: torch.Tensor) -> torch.Tensor:
        """`fn` on the vector unit (SFPU) over `op`'s destination values x, stored back (`fpu.sfpu`)."""
        return fpu.sfpu(fn, x, truncate=self._bfloat16_dst(op)).to(self.dtype)

    def _product(self, op: str, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        """in0 @ in1 on the matrix engine at `op`'s fidelity (in0 in SrcB, in1 in SrcA), before the destination's
        rounding; with exact accumulation, rounded step by step."""
        fidelity = self.compute[op].math_fidelity
        if self.exact_accumulation:
            return fpu.dst_matmul(in0, in1, fidelity, self._k_block(op, in0.shape[-1]))
        return fpu.matmul(in0, in1, fidelity, in1_cut=op in self.cut_weights, in0_cut=op in self.block_float_in0)

    def _k_block(self, op: str, k: int) -> int | None:
        """K tiles per block for exact accumulation: a linear's K split over the hidden groups, else all of K."""
        tiles = -(-k // fpu.TILE)
        return tiles // self.k_groups if OPS[op].kind == LINEAR and tiles % self.k_groups == 0 else None

    def _finish_linear(self, op: str, product: torch.Tensor, bias: torch.Tensor, activation: str | None) -> torch.Tensor:
        """A linear after its matmul: the packed partial sum, the bias added on the FPU, and the fused
        activation on the SFPU (the seed's GELU in its fast form), each as the destination holds it."""
        summed = self._dst(op, self._wide(self._dst(op, product)) + self._wide(bias))
        if activation == "gelu":
            return self._sfpu(op, fpu.gelu_fast, summed)
        return summed

    def _device_linear(self, op: str, x: torch.Tensor, p) -> torch.Tensor:
        """A linear in the card's arithmetic: [B, S, K] @ weight + bias, the fused activation."""
        tokens = x.reshape(-1, x.shape[-1])
        out = self._finish_linear(op, self._product(op, tokens, p.weight), p.bias, OPS[op].activation)
        return out.view(*x.shape[:-1], -1)

    def _linear_op(self, op: str, x: torch.Tensor, p) -> torch.Tensor:
        """A linear op's output before storage: the card's arithmetic, or the exact one."""
        if self.compute[op] is not None:
            return self._device_linear(op, x, p)
        out = self._linear(x, p)
        return F.gelu(out, approximate=self.gelu_approximate) if OPS[op].activation == "gelu" else out

    def _matmul_op(self, op: str, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        """An attention matmul's output before storage: the card's arithmetic, or the exact one."""
        if self.compute[op] is not None:
            return self._dst(op, self._product(op, in0, in1))
        return self._matmul(in0, in1)

    def _softmax_input(self, scores: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        """scores * scale + mask as the softmax's FPU computes them: the scale a bfloat16 scalar, each result in
        the destination (the device's softmax does not subtract the row maximum)."""
        scale = float(torch.tensor(scale, dtype=self.dtype))
        scaled = self._dst("softmax", self._wide(scores) * scale)
        return self._dst("softmax", self._wide(scaled) + self._wide(mask))

    def _exp(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax's exp on the SFPU: the approximate form in approximate mode."""
        return self._sfpu("softmax", fpu.exp_fast if self.compute["softmax"].math_approx_mode else torch.exp, x)

    def _row_sum(self, exps: torch.Tensor) -> torch.Tensor:
        """The FPU's row sum of the exps: once, or with exact accumulation tile by tile into the destination."""
        if not self.exact_accumulation:  # summed in float32 at least (float64 in the emulator's arithmetic)
            return self._dst("softmax", exps.sum(dim=-1, keepdim=True, dtype=torch.promote_types(exps.dtype, torch.float32)))
        total = torch.zeros(*exps.shape[:-1], 1, device=exps.device)
        for start in range(0, exps.shape[-1], fpu.TILE):
            total = fpu.round_dst(total + exps[..., start:start + fpu.TILE].sum(dim=-1, keepdim=True, dtype=torch.float32))
        return self._dst("softmax", total)

    def _normalize(self, exps: torch.Tensor) -> torch.Tensor:
        """exps * (1 / row sum): the reciprocal on the SFPU (approximate in approximate mode), the product on the FPU."""
        total = self._row_sum(exps)
        reciprocal = self._sfpu("softmax", fpu.reciprocal_fast if self.compute["softmax"].math_approx_mode else torch.reciprocal, total)
        return self._dst("softmax", self._wide(exps) * self._wide(reciprocal))

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
        return self._store("qkv", self._linear_op("qkv", x, p))

    def split_heads(self, qkv, num_heads):
        batch, seq, _ = qkv.shape
        q, k, v = qkv.view(batch, seq, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k.transpose(-1, -2), v

    def q_kt(self, q, k_t):
        return self._store("q_kt", self._matmul_op("q_kt", q, k_t))

    def softmax(self, scores, mask, scale):
        if self.compute["softmax"] is not None:
            return self._store("softmax", self._normalize(self._exp(self._softmax_input(scores, mask, scale))))
        scaled = scores.to(self.dtype) * scale
        masked = scaled + mask.to(self.dtype)
        return self._store("softmax", torch.softmax(masked, dim=-1))

    def attention_v(self, probs, v):
        return self._store("attention_v", self._matmul_op("attention_v", probs, v))

    def concat_heads(self, context):
        batch, heads, seq, head_size = context.shape
        return context.transpose(1, 2).reshape(batch, seq, heads * head_size)

    def self_output(self, x, p):
        return self._store("self_output", self._linear_op("self_output", x, p))

    def _add_layernorm(self, x, residual, p, eps):
        total = x.to(self.dtype) + residual.to(self.dtype)
        return F.layer_norm(total, (x.shape[-1],), p.weight, p.bias, eps)

    def attention_add_layernorm(self, x, residual, p, eps):
        return self._store("attention_add_layernorm", self._add_layernorm(x, residual, p, eps))

    def ffn_add_layernorm(self, x, residual, p, eps):
        return self._store("ffn_add_layernorm", self._add_layernorm(x, residual, p, eps))

    def ff1_gelu(self, x, p):
        return self._store("ff1_gelu", self._linear_op("ff1_gelu", x, p))

    def ff2(self, x, p):
        return self._store("ff2", self._linear_op("ff2", x, p))

    def qa_head(self, x, p):
        if self.compute["qa_head"] is None:
            logits = self._linear(x, p)
            return logits[..., 0], logits[..., 1]
        # No program config: the matmul writes its input's dtype, and the bias is a separate add (as the seed).
        dtype = self.run_config.dtype_of(OPS["ffn_add_layernorm"].output)
        tokens = x.reshape(-1, x.shape[-1])
        product = round_to(self._dst("qa_head", self._product("qa_head", tokens, p.weight)), dtype, self.held_dtype)
        logits = round_to(self._dst("qa_head", self._wide(product) + self._wide(p.bias)), dtype, self.held_dtype)
        logits = logits.view(*x.shape[:-1], -1)
        return logits[..., 0], logits[..., 1]
