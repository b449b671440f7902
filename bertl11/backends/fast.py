"""The torch backend's speed path (`QAModel.load(..., fast=True)`): the forward as fast as this machine runs it,
not the device's numerics.

`FastTorchOps` runs the model written against `ops.Backend` two ways, as `machine.Machine.forward` picks:

- compiled (CPU, where a C++ compiler is found): the whole forward exported once and compiled ahead of time
  by inductor with frozen weights, for 8-bit configs with int8 linears from PT2E (`compiled.py`), and cached
  beside the weight cache; a run too short to pay for compiling uses it only when the cache holds it;
- eager: op by op, float GEMMs or the int8 linears of `quantize.py`.

See `FastTorchOps` and docs/performance.md.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .. import allocator, compiled, machine, quantize
from ..config import BFLOAT8_B, BertShape, RunConfig, get_run_config
from ..machine import COMPILED, EAGER, Choice
from ..model import bert_qa
from ..verified import VerifiedDirectory
from ..weights import parameter_tree, tensor_kind
from .torch import TorchOps

# The QA head's module name in `_Forward`: it stays float in the int8 variant, as in the eager int8 path.
QA_HEAD = "qa_outputs"


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


def _module_name(linear: str) -> str:
    """A linear's name in the parameters tree ("bert.encoder.layer.0.attention.self.qkv") as a submodule name."""
    return linear.replace(".", "__")


def _linear_module(weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype) -> torch.nn.Linear:
    """x [.., K] @ weight [K, N] + bias as an `nn.Linear` (weight [N, K]: what PT2E's quantizer recognises)."""
    module = torch.nn.Linear(*weight.shape, dtype=dtype)
    module.weight = torch.nn.Parameter(weight.t().to(dtype).contiguous(), requires_grad=False)
    module.bias = torch.nn.Parameter(bias.to(dtype).clone(), requires_grad=False)
    return module


class _SplitLinear(torch.nn.Module):
    """x @ weight + bias for the compiled int8 forward, with a linear's few outlier input channels
    (`quantize.input_outliers`) kept out of `linear`, which PT2E quantises: there they would set the per-tensor
    activation scale and leave the other channels a handful of int8 levels. Their slice of the product
    (K = len(channels)) is a float `torch.mm`, which the quantizer leaves alone."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, channels: torch.Tensor):
        super().__init__()
        self.linear = _linear_module(weight.index_fill(0, channels, 0.0), bias, torch.float32)
        self.register_buffer("keep", torch.ones(weight.shape[0]).index_fill_(0, channels, 0.0))
        self.register_buffer("channels", channels.clone())
        self.register_buffer("rows", weight[channels].float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        y = self.linear(tokens * self.keep) + torch.mm(tokens[:, self.channels], self.rows)
        return y.view(*x.shape[:-1], -1)


class _Forward(torch.nn.Module):
    """The fast path's forward as a module, for `compiled.py` to export: `bert_qa` on `ops`, every linear an
    `nn.Linear` (or, given its outlier channels, a `_SplitLinear`), every other tensor a buffer, each in its own
    storage (the weight cache hands out views of whole files, which a package would otherwise embed whole)."""

    def __init__(self, ops: "FastTorchOps", flat: dict[str, torch.Tensor],
                 outliers: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.ops = ops
        self.linears = torch.nn.ModuleDict()
        self.names = []
        outliers = outliers or {}
        for name, t in flat.items():
            if tensor_kind(name) in ("matmul_weights", "qa_head_weights") and name.endswith(".weight"):
                linear, bias = name.removesuffix(".weight"), flat[f"{name.removesuffix('.weight')}.bias"]
                self.linears[_module_name(linear)] = (_SplitLinear(t, bias, outliers[name]) if name in outliers
                                                      else _linear_module(t, bias, ops.dtype))
        for name, t in flat.items():
            if _module_name(name.rpartition(".")[0]) not in self.linears:
                self.register_buffer(_module_name(name), t.to(ops.dtype).clone())
                self.names.append(name)

    def forward(self, input_ids, token_type_ids, attention_mask):
        # Built at every call from the module's own attributes, so export sees parameters and buffers, not constants.
        tree = {name: getattr(self, _module_name(name)) for name in self.names}
        tree |= {name.replace("__", "."): linear for name, linear in self.linears.items()}
        return bert_qa(self.ops, parameter_tree(tree), input_ids, token_type_ids, attention_mask, self.ops.shape)


class FastTorchOps(TorchOps):
    """`Backend` tuned for speed rather than for the device's numerics.

    - Weights are laid out once at load. Float GEMMs run in the config's compute dtype (float32 for FLOAT32;
      otherwise bfloat16 on CUDA, and on CPU whichever of bfloat16 and float32 `machine.probe` finds faster).
    - On CPU the forward runs compiled where `machine.Machine.forward` says so (`compiled.py`): exported,
      compiled by AOTInductor with frozen weights, cached beside the weight cache. `compile` says what a run
      may do when the cache does not hold it yet: `compiled.BUILD` compiles it now, `compiled.CACHED` runs
      eager (a short run, which minutes of compiling would not pay for); `compiled.NEVER` always runs eager
      (the profiler times ops one by one). Where it cannot be had (no C++ compiler, a failed compile, not
      cached), the forward runs eager and `kernel()` says why.
    - On CPU, 8-bit weight configs (BFLOAT8_B) run their encoder linears through an int8 kernel where the
      machine has a fast one (`machine.Machine.int8_kernel`). Compiled: oneDNN's quantised linear from PT2E,
      weights per output column, activations per tensor per call, fused with the ops around it. Eager:
      `torch._int_mm` (VNNI/AMX) or fbgemm (AVX2), weights per output column, activations per token at run
      time, except a few outlier input channels per linear (`quantize.input_outliers`), whose small slice of
      the product stays in float32; those int8 linears are made once and kept in `int8_cache` (`quantize.py`).
      BFLOAT8_B is 8 bits too, but with one exponent per 16 values along the output axis, which an integer
      GEMM cannot factor out: these are not the device's values. Activations between the int8 GEMMs stay
      float32 (int32 accumulators dequantise to it).
    - Op outputs are not rounded through the config's storage dtypes (no per-op BFLOAT8_B simulation).
    - Q.K^T, softmax and .V run as one fused kernel (`scaled_dot_product_attention` with the padding mask).
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, device: str | torch.device = "cpu",
                 int8_cache: VerifiedDirectory | None = None, compiled_cache: VerifiedDirectory | None = None,
                 compile: str = compiled.CACHED):
        """int8_cache: where the eager int8 linears are kept (`cache.int8_cache`); without one they are made at
        every load. compiled_cache: where the compiled forward is kept (`cache.compiled_cache`); without one
        the forward runs eager. compile: one of `compiled.POLICIES` (see the class docstring)."""
        super().__init__(shape, run_config, device, arithmetic=get_run_config("FLOAT32"))  # exact arithmetic
        if compile not in compiled.POLICIES:
            raise ValueError(f"compile={compile!r}: choose one of {compiled.POLICIES}")
        self.int8_cache, self.compiled_cache, self.compile = int8_cache, compiled_cache, compile
        self.float_gemm = self.gemm_dtype
        self.compiled_forward = None
        if self.torch_device.type != "cpu":
            self.way = Choice(EAGER, f"the compiled forward is built for CPUs, not {self.torch_device.type}")
        elif compile == compiled.NEVER:
            self.way = Choice(EAGER, "op by op, as asked")
        else:
            self.way = machine.probe().forward()
        self._choose_kernels()

    def _choose_kernels(self) -> None:
        """The int8 kernel and the GEMM dtype for the forward run `self.way`."""
        self.int8 = Choice("none", "not an 8-bit weight config" if self.run_config.weights != BFLOAT8_B
                           else f"int8 GEMMs are a CPU choice, not taken on {self.torch_device.type}")
        if self.torch_device.type == "cpu" and self.run_config.weights == BFLOAT8_B:
            self.int8 = machine.probe().int8_kernel(self.way.kernel)
        self.gemm_dtype = torch.float32 if self.int8.kernel != "none" else self.float_gemm
        self.dtype = self.held_dtype = self.gemm_dtype  # no per-op rounding here: everything in the GEMM dtype

    def prepare(self, flat: dict[str, torch.Tensor]):
        if self.way.kernel == COMPILED:
            try:
                return self._prepare_compiled(flat)
            except compiled.CompileUnavailable as error:
                self.way = Choice(EAGER, f"no compiled forward: {error}")
                self._choose_kernels()
                self.cache_detail = f"eager forward ({error})"
        if self.int8.kernel == "none":
            return parameter_tree({name: t.to(self.torch_device, self.dtype) for name, t in flat.items()})
        flat = {name: t.float() for name, t in flat.items()}
        record = functools.partial(channel_maxima, shape=self.shape)
        linears, outcome = quantize.load_or_quantize(flat, self.shape, self.int8.kernel, record, self.int8_cache)
        self.cache_detail = "; ".join(d for d in (self.cache_detail, outcome.detail if outcome else "") if d)
        return parameter_tree({**flat, **linears})

    def _prepare_compiled(self, flat: dict[str, torch.Tensor]) -> None:
        """Load or compile the forward (`compiled.load_or_compile`); it holds its own weights, so no tree."""
        if self.compiled_cache is None:
            raise compiled.CompileUnavailable("no compiled-forward cache given")
        int8 = self.int8.kernel == compiled.INT8
        variant = compiled.INT8 if int8 else str(self.dtype).removeprefix("torch.")

        def build_module() -> _Forward:
            if not int8:
                return _Forward(self, flat).eval()
            weights = {name: t.float() for name, t in flat.items()}
            outliers = quantize.input_outliers(weights, self.shape, functools.partial(channel_maxima, shape=self.shape))
            return _Forward(self, weights, outliers).eval()

        self.compiled_forward, outcome = compiled.load_or_compile(
            build_module, self.shape.vocab_size, self.shape.max_position_embeddings, variant, [f"linears.{QA_HEAD}"],
            self.compiled_cache, self.compile)
        self.cache_detail = outcome.detail
        self.memory = allocator.keep_freed_memory()
        return None

    def forward(self, model, params, input_ids, token_type_ids, attention_mask, shape):
        if self.compiled_forward is None:
            return super().forward(model, params, input_ids, token_type_ids, attention_mask, shape)
        # The package reads its inputs as the example it was exported with: contiguous int64.
        start, end = self.compiled_forward(*(t.long().contiguous() for t in (input_ids, token_type_ids, attention_mask)))
        return start, end

    def describe(self) -> str:
        way = ", compiled" if self.way.kernel == COMPILED else ""
        if self.int8.kernel == compiled.INT8:
            return "int8 encoder linears (qlinear: per-tensor u8 activations x per-column s8 weights), float32 elsewhere" + way
        if self.int8.kernel != "none":
            return (f"int8 encoder linears ({self.int8.kernel}, per-token x per-column, {quantize.OUTLIER_CHANNELS} float "
                    "input channels), float32 elsewhere")
        return f"{str(self.dtype).removeprefix('torch.')}, fused attention{way}"

    def kernel(self) -> str:
        """The GEMMs and why; then how the forward runs and why."""
        if self.int8.kernel != "none":
            gemms = f"int8 {self.int8.kernel} encoder linears ({self.int8.reason})"
        elif self.run_config.weights == BFLOAT8_B:
            gemms = f"{super().kernel()}; no int8 ({self.int8.reason})"
        else:
            gemms = super().kernel()
        memory = f"; {self.memory}" if self.compiled_forward is not None else ""
        return f"{gemms}; {self.way.kernel} forward ({self.way.reason}){memory}"

    def peak_kernel(self) -> str | None:
        """The probe's name for the kernel the GEMMs run (`machine.Machine.rates`), on CPU."""
        if self.torch_device.type != "cpu":
            return None
        return self.int8.kernel if self.int8.kernel != "none" else str(self.gemm_dtype).removeprefix("torch.")

    def _hold(self, tensor: str, t: torch.Tensor) -> torch.Tensor:
        return t

    def _linear(self, x: torch.Tensor, p) -> torch.Tensor:
        if isinstance(p, torch.nn.Module):  # the compiled forward's nn.Linear (`_Forward`)
            return p(x)
        if isinstance(p.weight, torch.Tensor):
            return super()._linear(x, p)
        return p.weight(x.reshape(-1, x.shape[-1])).add_(p.bias).view(*x.shape[:-1], -1)

    fuses_attention = True

    def fused_attention(self, q, k_t, v, mask, scale):
        """(3)-(5) in one kernel: softmax(Q.K^T * scale + mask) . V."""
        return F.scaled_dot_product_attention(q, k_t.transpose(-1, -2), v, attn_mask=mask, scale=scale)
