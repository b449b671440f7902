"""What this machine computes fast: the one place that picks the torch backend's kernels and how its fast path runs.

A CPU without native bfloat16 or int8 instructions (AVX2: no AVX-512 bf16, no VNNI, no AMX) still runs
torch's bfloat16 matmul and `torch._int_mm`, but through reference kernels about 200x slower than float32.
So nothing here trusts a dtype to be fast: `probe()` reads torch's CPU capability and the CPU's flags (to
explain), and times one small GEMM per kernel on one thread (to decide), once per process. Each choice
comes with the reason `bertl11 doctor` and `bertl11 perf` print.

The fast path runs its forward compiled (`compiled.py`: inductor fuses what eager runs as separate passes)
wherever a C++ compiler is found, else eager; its int8 kernel for the 8-bit configs depends on which
(`Machine.int8_kernel`): compiled, oneDNN's quantised linear from PT2E; eager, `torch._int_mm` or fbgemm.

Environment variables force a choice, so each side of each is tested on any machine:

    BERTL11_GEMM_DTYPE=bfloat16|float32      what the BFLOAT16 / BFLOAT8_B configs' GEMMs run in on CPU,
                                             in the simulation (`TorchOps`, on bfloat16 operands either
                                             way) and in the fast path (`FastTorchOps`)
    BERTL11_FAST_PATH=compiled|eager         how the fast path runs its forward on CPU
    BERTL11_INT8_KERNEL=qlinear|int_mm|fbgemm|none
                                             the fast path's kernel for the 8-bit configs' encoder linears
                                             (qlinear runs compiled, int_mm and fbgemm eager; none: the
                                             float GEMMs above)
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass

import torch

from . import compiled
from .errors import UserError
from .quantize import INT8_LINEARS, OUTLIER_CHANNELS

GEMM_DTYPE_VARIABLE = "BERTL11_GEMM_DTYPE"
INT8_KERNEL_VARIABLE = "BERTL11_INT8_KERNEL"
FAST_PATH_VARIABLE = "BERTL11_FAST_PATH"
GEMM_DTYPES = ("bfloat16", "float32")
COMPILED, EAGER = "compiled", "eager"
FAST_PATHS = (COMPILED, EAGER)
# The int8 kernels each way of running the forward can use: oneDNN's quantised linear exists in the compiled
# graph only (PT2E rewrites the linears), `torch._int_mm` and fbgemm are called op by op.
INT8_KERNELS_OF = {COMPILED: ("qlinear",), EAGER: ("int_mm", "fbgemm")}
INT8_KERNELS = (*INT8_KERNELS_OF[COMPILED], *INT8_KERNELS_OF[EAGER], "none")

# The probe GEMM: [M, K] x [K, N], big enough that native kernels reach most of their rate (per thread:
# float32 ~130 GFLOP/s with AVX-512, ~60 with AVX2), small enough that a reference kernel at 0.4 GFLOP/s
# takes 0.3 s for its two calls.
PROBE_SHAPE = (128, 512, 512)
PROBE_REPEATS = 30  # best of: other jobs on a shared machine slow single calls
# A kernel under this share of float32's rate is a fallback (reference kernels run at ~0.005x).
NATIVE_FRACTION = 0.1
SLOW_CALL_S = 0.02  # one call this slow is a fallback kernel: do not time it again
# An int8 linear replaces the float GEMM only when this much faster (quantisation included): a margin for a
# shared machine's noise, which can move one probe by 20%.
INT8_ADVANTAGE = 1.25
# Seconds a compile of the forward takes (`compiled.py`), for deciding whether a run pays for one: tiny took 2-3
# minutes on a 2-core AVX2 VM busy with other jobs (docs/performance.md).
COMPILE_SECONDS = 180
# The CPU flags that decide which kernels can be fast, as Linux's /proc/cpuinfo names them.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Choice:
    """A kernel choice and why, in a few words."""

    kernel: str
    reason: str


@dataclass(frozen=True)
class Machine:
    """The probe's findings: torch's CPU capability, the CPU's flags, and rates measured on one thread.

    rates: GFLOP/s (GOP/s for int8) of the probe GEMM per kernel: float32, bfloat16, and the fast path's int8
    linears as they run, activation quantisation included: int_mm (with its outlier channels), fbgemm
    (dynamically quantised linear) where torch has the fbgemm engine, and qlinear (oneDNN's quantised linear,
    what PT2E makes of a linear) where torch has oneDNN.
    compiler: the C++ compiler inductor would use (`compiled.compiler`), or None.
    """

    capability: str
    flags: tuple[str, ...]
    threads: int
    rates: dict[str, float]
    compiler: str | None = None

    def native(self, kernel: str) -> bool:
        """Whether a kernel runs at a native rate here, not through a fallback ~200x slower than float32."""
        return self.rates.get(kernel, 0.0) >= NATIVE_FRACTION * self.rates["float32"]

    def rate_text(self, kernel: str) -> str:
        unit = "GOP/s" if kernel in INT8_KERNELS else "GFLOP/s"
        return f"{kernel} {self.rates[kernel]:.0f} {unit}"

    def flags_text(self) -> str:
        return ", ".join(self.flags) or "none of " + " ".join(RELEVANT_FLAGS)

    def gemm_dtype(self) -> Choice:
        """What the BFLOAT16 and BFLOAT8_B configs' float GEMMs run in on this CPU: bfloat16 where its GEMM
        is at least as fast as float32's, else float32 (on bfloat16 operands in the simulation: the same
        products, since a bfloat16 x bfloat16 product is exact in float32)."""
        forced = forced_choice(GEMM_DTYPE_VARIABLE, GEMM_DTYPES)
        if forced:
            return Choice(forced, f"forced by {GEMM_DTYPE_VARIABLE}")
        versus = f"{self.rate_text('bfloat16')} vs {self.rate_text('float32')} on one thread"
        if self.rates["bfloat16"] >= self.rates["float32"]:
            return Choice("bfloat16", f"native bfloat16 GEMMs: {versus}")
        return Choice("float32", f"bfloat16 GEMMs are slower here: {versus}")

    def forward(self) -> Choice:
        """How the fast path runs its forward on CPU: compiled where a C++ compiler is found (inductor fuses the
        ops between the GEMMs; the GEMMs are the same or, for int8, oneDNN's quantised linear), else eager. A
        forced int8 kernel that runs only one way decides it."""
        forced = forced_choice(FAST_PATH_VARIABLE, FAST_PATHS)
        kernel = forced_choice(INT8_KERNEL_VARIABLE, INT8_KERNELS)
        runs_on = next((way for way, kernels in INT8_KERNELS_OF.items() if kernel in kernels), None)
        if forced and runs_on and forced != runs_on:
            raise UserError(f"{INT8_KERNEL_VARIABLE}={kernel} runs {runs_on}, not under {FAST_PATH_VARIABLE}={forced}")
        if forced:
            return Choice(forced, f"forced by {FAST_PATH_VARIABLE}")
        if runs_on:
            return Choice(runs_on, f"{INT8_KERNEL_VARIABLE}={kernel} runs {runs_on}")
        if self.compiler is None:
            return Choice(EAGER, "no C++ compiler found ($CXX or g++): inductor needs one to compile")
        return Choice(COMPILED, f"inductor fuses the ops between the GEMMs, compiling with {self.compiler}")

    def compile_policy(self, flops: float) -> str:
        """What a fast-path run of `flops` matmul operations asks of the compiled forward (`compiled.POLICIES`):
        to compile it when the run would take longer eager, at the float GEMM's probed rate on every thread,
        than a compile takes (COMPILE_SECONDS); else to use it only if it is cached."""
        eager_seconds = flops / (self.rates[self.gemm_dtype().kernel] * 1e9 * torch.get_num_threads())
        return compiled.BUILD if eager_seconds > COMPILE_SECONDS else compiled.CACHED

    def int8_kernel(self, way: str = EAGER) -> Choice:
        """The fast path's kernel for 8-bit encoder linears when the forward runs `way` (compiled or eager): the
        fastest int8 linear that way has if it beats the float GEMM `gemm_dtype` picks by INT8_ADVANTAGE, else
        none (the float GEMM)."""
        forced = forced_choice(INT8_KERNEL_VARIABLE, INT8_KERNELS)
        if forced:
            if forced != "none" and forced not in INT8_KERNELS_OF[way]:
                return Choice("none", f"{INT8_KERNEL_VARIABLE}={forced} runs only {COMPILED if way == EAGER else EAGER}")
            if forced != "none" and forced not in self.rates:
                raise UserError(f"{INT8_KERNEL_VARIABLE}={forced}: this torch build has no {forced} kernel")
            return Choice(forced, f"forced by {INT8_KERNEL_VARIABLE}")
        float_kernel = self.gemm_dtype().kernel
        candidates = [k for k in INT8_KERNELS_OF[way] if k in self.rates]
        if not candidates:
            return Choice("none", f"this torch build has no {' or '.join(INT8_KERNELS_OF[way])} kernel")
        int8 = max(candidates, key=self.rates.__getitem__)
        versus = f"{self.rate_text(int8)} vs {self.rate_text(float_kernel)} on one thread"
        if self.rates[int8] >= INT8_ADVANTAGE * self.rates[float_kernel]:
            return Choice(int8, versus)
        return Choice("none", f"no {way} int8 GEMM is {INT8_ADVANTAGE}x faster than {float_kernel}: {versus}")


def forced_choice(variable: str, allowed: tuple[str, ...]) -> str | None:
    """The value of an environment variable that forces a choice, or None when it is unset; any other value than
    `allowed` is a one-line UserError."""
    value = os.environ.get(variable, "").strip()
    if value and value not in allowed:
        raise UserError(f"{variable}={value!r}: choose one of {', '.join(allowed)}")
    return value or None


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in Linux's /proc/cpuinfo (empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flags() -> tuple[str, ...]:
    """The RELEVANT_FLAGS this CPU reports."""
    present = set(_cpuinfo().get("flags", "").split())
    return tuple(flag for flag in RELEVANT_FLAGS if flag in present)


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def _time_kernels(calls: dict) -> dict[str, float]:
    """CPU seconds of each call's best run. The calls take turns, so that all see the same moments of a shared
    machine, each run right after an untimed one of the same call (which pays any JIT or primitive creation the
    first time, and brings its operands back into cache). On one thread the calling thread does all the work,
    and its CPU time leaves out the moments other jobs hold the core, which the wall clock counts. A call
    slower than SLOW_CALL_S (a fallback kernel) is not run again."""
    best = {name: float("inf") for name in calls}
    for _ in range(PROBE_REPEATS):
        for name, call in calls.items():
            if best[name] == float("inf") or best[name] <= SLOW_CALL_S:
                call()
                started = time.thread_time()
                call()
                best[name] = min(best[name], time.thread_time() - started)
    return best


def _int8_linear(kernel: str, x: torch.Tensor, w: torch.Tensor):
    """A call running the eager fast path's int8 linear (`quantize.INT8_LINEARS`) on x [M, K] and w [K, N], with
    as many float outlier channels as the model gives it: the raw int8 GEMM is half of such a call's time."""
    linear = INT8_LINEARS[kernel].quantize(w, torch.arange(OUTLIER_CHANNELS))
    return lambda: linear(x)


def _qlinear(x: torch.Tensor, w: torch.Tensor):
    """A call running oneDNN's quantised linear as the compiled int8 forward does (`compiled.py`): the range of
    x [M, K] (its per-tensor u8 scale and zero point), then the u8 x s8 GEMM against w [K, N] quantised per
    column and packed once, float32 out. The compiled graph fuses the quantisation of x itself into the op
    that writes x (a layernorm, a GELU), so it is done once here, outside the call."""
    scale = w.abs().amax(dim=0).clamp(min=1e-12) / 127
    weight = torch.ops.onednn.qlinear_prepack((w / scale).round().to(torch.int8).t().contiguous(), list(x.shape))
    zero_points = torch.zeros(w.shape[1], dtype=torch.long)
    low, high = torch.aminmax(x)
    x_scale = (high - low) / 255
    x_zero = (-low / x_scale).round().to(torch.long)
    quantized = (x / x_scale + x_zero).round().clamp(0, 255).to(torch.uint8)

    def call():
        torch.aminmax(x)
        return torch.ops.onednn.qlinear_pointwise.tensor(quantized, x_scale, x_zero, weight, scale, zero_points, None,
                                                         1.0, 0, torch.float32, "none", [], "")

    return call


def measure_rates() -> dict[str, float]:
    """GFLOP/s of the probe GEMM per kernel, on one thread."""
    m, k, n = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    calls = {
        "float32": lambda: torch.mm(a, b),
        "bfloat16": functools.partial(torch.mm, a.bfloat16(), b.bfloat16()),
        "int_mm": _int8_linear("int_mm", a, b),
    }
    if "fbgemm" in torch.backends.quantized.supported_engines:
        calls["fbgemm"] = _int8_linear("fbgemm", a, b)
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise"):
        calls["qlinear"] = _qlinear(a, b)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-core rates: a second thread stalls on a core another job holds
    try:
        return {name: 2 * m * k * n / seconds / 1e9 for name, seconds in _time_kernels(calls).items()}
    finally:
        torch.set_num_threads(threads)


@functools.cache
def probe() -> Machine:
    """This machine, probed once per process."""
    with torch.inference_mode():
        rates = measure_rates()
    return Machine(torch.backends.cpu.get_cpu_capability(), cpu_flags(), torch.get_num_threads(), rates,
                   compiled.compiler())


def cuda_devices() -> list[str]:
    """One entry per visible CUDA device: index, name, memory."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(f"cuda:{index} {properties.name}, {properties.total_memory / 2**30:.0f} GiB")
    return devices


def package_version(name: str) -> str:
    """An installed distribution's version without importing it (importing ttnn opens a device)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
