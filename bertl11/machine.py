"""What this machine computes fast: the one place that picks the torch backend's kernels.

A CPU without native bfloat16 or int8 instructions (AVX2: no AVX-512 bf16, no VNNI, no AMX) still runs
torch's bfloat16 matmul and `torch._int_mm`, but through reference kernels about 200x slower than float32.
So nothing here trusts a dtype to be fast: `probe()` reads torch's CPU capability and the CPU's flags (to
explain), and times one small GEMM per kernel on one thread (to decide), once per process. Each choice
comes with the reason `bertl11 doctor` and `bertl11 perf` print.

Environment variables force a choice, so both sides of each are tested on any machine:

    BERTL11_GEMM_DTYPE=bfloat16|float32      what the BFLOAT16 / BFLOAT8_B configs' GEMMs run in on CPU,
                                             in the simulation (`TorchOps`, on bfloat16 operands either
                                             way) and in the fast path (`FastTorchOps`)
    BERTL11_INT8_KERNEL=int_mm|fbgemm|none   the fast path's kernel for the 8-bit configs' encoder linears
                                             (none: the float GEMMs above)
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass

import torch

from .errors import UserError
from .quantize import INT8_LINEARS, OUTLIER_CHANNELS

GEMM_DTYPE_VARIABLE = "BERTL11_GEMM_DTYPE"
INT8_KERNEL_VARIABLE = "BERTL11_INT8_KERNEL"
GEMM_DTYPES = ("bfloat16", "float32")
INT8_KERNELS = ("int_mm", "fbgemm", "none")

# The probe GEMM: [M, K] x [K, N], big enough that native kernels reach most of their rate (per thread:
# float32 ~130 GFLOP/s with AVX-512, ~60 with AVX2), small enough that a reference kernel at 0.4 GFLOP/s
# takes 0.3 s for its two calls.
PROBE_SHAPE = (128, 512, 512)
PROBE_REPEATS = 5  # best of: other jobs on a shared machine slow single calls
# A kernel under this share of float32's rate is a fallback (reference kernels run at ~0.005x).
NATIVE_FRACTION = 0.1
SLOW_CALL_S = 0.02  # one call this slow is a fallback kernel: do not time it again
# An int8 linear replaces the float GEMM only when this much faster (quantisation included): a margin for a
# shared machine's noise, which can move one probe by 20%.
INT8_ADVANTAGE = 1.25
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
    linears as they run, activation quantisation and outlier channels included: int_mm and, where torch has
    the fbgemm engine, fbgemm (dynamically quantised linear).
    """

    capability: str
    flags: tuple[str, ...]
    threads: int
    rates: dict[str, float]

    def native(self, kernel: str) -> bool:
        """Whether a kernel runs at a native rate here, not through a fallback ~200x slower than float32."""
        return self.rates.get(kernel, 0.0) >= NATIVE_FRACTION * self.rates["float32"]

    def rate_text(self, kernel: str) -> str:
        unit = "GOP/s" if kernel in ("int_mm", "fbgemm") else "GFLOP/s"
        return f"{kernel} {self.rates[kernel]:.0f} {unit}"

    def flags_text(self) -> str:
        return ", ".join(self.flags) or "none of " + " ".join(RELEVANT_FLAGS)

    def gemm_dtype(self) -> Choice:
        """What the BFLOAT16 and BFLOAT8_B configs' float GEMMs run in on this CPU: bfloat16 where its GEMM
        is at least as fast as float32's, else float32 (on bfloat16 operands in the simulation: the same
        products, since a bfloat16 x bfloat16 product is exact in float32)."""
        forced = _forced(GEMM_DTYPE_VARIABLE, GEMM_DTYPES)
        if forced:
            return Choice(forced, f"forced by {GEMM_DTYPE_VARIABLE}")
        versus = f"{self.rate_text('bfloat16')} vs {self.rate_text('float32')} on one thread"
        if self.rates["bfloat16"] >= self.rates["float32"]:
            return Choice("bfloat16", f"native bfloat16 GEMMs: {versus}")
        return Choice("float32", f"bfloat16 GEMMs are slower here: {versus}")

    def int8_kernel(self) -> Choice:
        """The fast path's kernel for 8-bit encoder linears: the fastest int8 GEMM if it beats the float
        GEMM `gemm_dtype` picks by INT8_ADVANTAGE, else none (the float GEMM)."""
        forced = _forced(INT8_KERNEL_VARIABLE, INT8_KERNELS)
        if forced:
            if forced == "fbgemm" and "fbgemm" not in self.rates:
                raise UserError(f"{INT8_KERNEL_VARIABLE}=fbgemm: this torch build has no fbgemm engine")
            return Choice(forced, f"forced by {INT8_KERNEL_VARIABLE}")
        float_kernel = self.gemm_dtype().kernel
        int8 = max((k for k in ("int_mm", "fbgemm") if k in self.rates), key=self.rates.__getitem__)
        versus = f"{self.rate_text(int8)} vs {self.rate_text(float_kernel)} on one thread"
        if self.rates[int8] >= INT8_ADVANTAGE * self.rates[float_kernel]:
            return Choice(int8, versus)
        return Choice("none", f"no int8 GEMM is {INT8_ADVANTAGE}x faster than {float_kernel}: {versus}")


def _forced(variable: str, allowed: tuple[str, ...]) -> str | None:
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


def _time_kernel(call) -> float:
    """Seconds of the best call after one warm-up (which pays any JIT or primitive creation)."""
    call()
    best = float("inf")
    for _ in range(PROBE_REPEATS):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
        if best > SLOW_CALL_S:
            break
    return best


def _int8_linear(kernel: str, x: torch.Tensor, w: torch.Tensor):
    """A call running the fast path's int8 linear (`quantize.INT8_LINEARS`) on x [M, K] and w [K, N], with
    as many float outlier channels as the model gives it: the raw int8 GEMM is half of such a call's time."""
    linear = INT8_LINEARS[kernel].quantize(w, torch.arange(OUTLIER_CHANNELS))
    return lambda: linear(x)


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-core rates: a second thread stalls on a core another job holds
    try:
        return {name: 2 * m * k * n / _time_kernel(call) / 1e9 for name, call in calls.items()}
    finally:
        torch.set_num_threads(threads)


@functools.cache
def probe() -> Machine:
    """This machine, probed once per process."""
    with torch.inference_mode():
        rates = measure_rates()
    return Machine(torch.backends.cpu.get_cpu_capability(), cpu_flags(), torch.get_num_threads(), rates)


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
