"""The Tensix FPU's arithmetic in torch: what a Tenstorrent core computes for the seed's ops, bit for bit where
the public sources say how (docs/sources.md, "The Tensix FPU").

Math fidelity. The matrix engine multiplies a 5-bit piece of SrcA by a 7-bit piece of SrcB. A matmul puts in0
(activations, Q, the softmax's probabilities) in SrcB and in1 (weights, K^T, V) in SrcA. Each operand splits into
a high part (the sign, the exponent and the leading significant bits) and a low part (the rest, with the sign):

    SrcA  high: implicit 1 + 4 mantissa bits (bit mask 0xFFF80000 of a float32)   low: the other 3 bits
    SrcB  high: implicit 1 + 6 mantissa bits (bit mask 0xFFFE0000)                low: the last bit

and fidelity phase p multiplies (p & 1 ? A low : A high) by (p & 2 ? B low : B high). LoFi runs phase 0, HiFi2
phases 0-1, HiFi3 0-2, HiFi4 all four. For bfloat16 operands the sums simplify: phases 0+1 are A x B-high, so
HiFi2 is one GEMM, HiFi3 adds B-low x A-high, and HiFi4 is the exact product (`matmul`).

The destination. Without fp32 accumulation the destination registers hold bfloat16: each MVMUL adds 16
K-products of one phase to them and rounds (`dst_matmul`, `round_dst`), and K blocks meet in L1, where the packer
adds them in bfloat16. Vector-unit (SFPU) results are truncated into a bfloat16 destination (`truncate_bfloat16`).

The SFPU's approximations the seed runs: the fused GELU of FF1 (`gelu_fast`, a 6-piece linear table), the
softmax's exp (`exp_fast`, Schraudolph's bit trick) and its reciprocal (`reciprocal_fast`, a quadratic estimate
and one Newton step).
"""

from __future__ import annotations

import functools
import math

import torch

SRC_A, SRC_B = "SrcA", "SrcB"
# Phases each fidelity runs (phase p = 0, 1, ... n - 1).
PHASES = {"LoFi": 1, "HiFi2": 2, "HiFi3": 3, "HiFi4": 4}
# The bits of a float32 a side's high part keeps; the low part is the value minus it.
HIGH_MASKS = {SRC_A: 0xFFF80000, SRC_B: 0xFFFE0000}
# Which bit of the phase number selects a side's low part.
LOW_PHASE_BIT = {SRC_A: 1, SRC_B: 2}
MVMUL_K = 16  # K-products one matrix-engine instruction adds to the destination
TILE = 32


def _signed(value: int, bits: int) -> int:
    """An unsigned bit pattern as the signed integer torch's int16/int32 hold."""
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


# Float types as (integer view, bits, mantissa bits): the masks above are float32's; the same leading bits of a
# bfloat16 or float64 value are kept by clearing its mantissa below them.
_LAYOUTS = {torch.bfloat16: (torch.int16, 16, 7), torch.float32: (torch.int32, 32, 23), torch.float64: (torch.int64, 64, 52)}
_KEPT_MANTISSA_BITS = {side: 23 - (~mask & 0xFFFFFFFF).bit_length() for side, mask in HIGH_MASKS.items()}  # 4, 6


def high_part(t: torch.Tensor, side: str) -> torch.Tensor:
    """The bits of `t` (bfloat16, float32 or float64) the high-part phases of `side` consume, in t's dtype:
    sign, exponent and the leading significant bits, the rest cleared (truncation toward zero)."""
    try:
        integer, bits, mantissa = _LAYOUTS[t.dtype]
    except KeyError:
        raise TypeError(f"the matrix engine takes floating-point operands, not {t.dtype}") from None
    cleared = mantissa - _KEPT_MANTISSA_BITS[side]
    return t.view(integer).bitwise_and(_signed(((1 << bits) - 1) ^ ((1 << cleared) - 1), bits)).view(t.dtype)


def phase_operand(t: torch.Tensor, side: str, phase: int) -> torch.Tensor:
    """What fidelity phase `phase` multiplies of an operand on `side`: its high part, or its low part (the value
    minus the high part: the remaining bits with the operand's sign, exact in t's dtype)."""
    high = high_part(t, side)
    return t - high if phase & LOW_PHASE_BIT[side] else high


def matmul(in0: torch.Tensor, in1: torch.Tensor, fidelity: str, in1_cut: bool = False, in0_cut: bool = False) -> torch.Tensor:
    """in0 @ in1 on the matrix engine at `fidelity` (in0 in SrcB, in1 in SrcA), the phase products summed
    as float32 GEMMs sum them (no destination rounding: `dst_matmul` has that), in the operands' dtype (a
    bfloat16 result is the float32 sum rounded once). `in1_cut`: in1 already holds only its SrcA high part
    (weights cut once at load for LoFi); `in0_cut`: in0 already is its SrcB high part (BFLOAT8_B values, at
    most 7 significant bits, always are)."""
    if fidelity == "HiFi4":
        return torch.matmul(in0, in1)
    in0_high = in0 if in0_cut else high_part(in0, SRC_B)
    if fidelity == "HiFi2":  # phases 0 + 1: A high x B high + A low x B high = A x B high
        return torch.matmul(in0_high, in1)
    in1_high = in1 if in1_cut else high_part(in1, SRC_A)
    if fidelity == "LoFi":
        return torch.matmul(in0_high, in1_high)
    if fidelity == "HiFi3":  # phases 0 + 1 + 2: A x B high + A high x B low
        in0_low = in0 - in0_high
        wide = torch.promote_types(in0.dtype, torch.float32)
        total = torch.matmul(in0_high.to(wide), in1.to(wide)) + torch.matmul(in0_low.to(wide), in1_high.to(wide))
        return total.to(in0.dtype)
    raise ValueError(f"no math fidelity {fidelity!r}; choose one of {', '.join(PHASES)}")


def round_dst(t: torch.Tensor) -> torch.Tensor:
    """float32 values as a bfloat16 destination register stores them, still in float32: rounded to TF32 and
    then to bfloat16, each to nearest with ties away from zero (tt-metal's account of the hardware)."""
    bits = t.float().view(torch.int32)
    bits = (bits + (1 << 12)).bitwise_and_(_signed(0xFFFFE000, 32))  # 13 low bits: float32 -> TF32
    bits = bits.add_(1 << 15).bitwise_and_(_signed(0xFFFF0000, 32))  # 16 low bits: -> bfloat16
    return bits.view(torch.float32)


def truncate_bfloat16(t: torch.Tensor) -> torch.Tensor:
    """float32 values as the SFPU stores them into a bfloat16 destination: mantissa truncated toward zero,
    denormals flushed to zero."""
    bits = t.float().view(torch.int32).bitwise_and(_signed(0xFFFF0000, 32))
    denormal = bits.bitwise_and(0x7F800000) == 0
    return bits.masked_fill_(denormal, 0).view(torch.float32)


def dst_matmul(in0: torch.Tensor, in1: torch.Tensor, fidelity: str, k_block: int | None = None) -> torch.Tensor:
    """in0 @ in1 as the matrix engine accumulates it in a bfloat16 destination (float32 result holding bfloat16
    values). Per 32-wide K tile, each phase of `fidelity` in turn adds K[0:16] and then K[16:32] (one MVMUL
    each), rounding the destination (`round_dst`) after every add. `k_block` K tiles accumulate in the
    destination; successive blocks are added to the running sum in L1 by the packer, in bfloat16 (one block:
    all of K). K is padded to whole tiles with zeros, which add nothing."""
    in0, in1 = in0.float(), in1.float()
    k = in0.shape[-1]
    pad = -k % TILE
    if pad:
        in0 = torch.nn.functional.pad(in0, (0, pad))
        in1 = torch.nn.functional.pad(in1, (0, 0, 0, pad))
    k_tiles = in0.shape[-1] // TILE
    k_block = k_block or k_tiles
    if k_tiles % k_block:
        raise ValueError(f"K of {k_tiles} tiles does not split into blocks of {k_block}")
    phases = range(PHASES[fidelity])
    operands = [(phase_operand(in0, SRC_B, p), phase_operand(in1, SRC_A, p)) for p in phases]
    total = None
    for first in range(0, k_tiles, k_block):
        dst = None
        for tile in range(first, first + k_block):
            for a, b in operands:
                for start in range(tile * TILE, (tile + 1) * TILE, MVMUL_K):
                    chunk = torch.matmul(a[..., start:start + MVMUL_K], b[..., start:start + MVMUL_K, :])
                    dst = round_dst(chunk if dst is None else dst + chunk)
        total = dst if total is None else round_dst(total + dst)
    return total


# The fast GELU's table on |x| (sfpu ckernel_sfpu_gelu.h, gelu_init in approximate mode): (upper end of the
# bin, slope, intercept), each held as float16. GELU(x) = x / 2 + slope * |x| + intercept.
GELU_TABLE = ((0.5, 0.1928, -0.00010443), (1.0, 0.4939, -0.1604), (1.5, 0.6188, -0.2796),
              (2.0, 0.6099, -0.2635), (3.0, 0.5402, -0.1194), (math.inf, 0.5, 0.0))


def _float16_values(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float16).float()


_GELU_EDGES = torch.tensor([edge for edge, _, _ in GELU_TABLE[:-1]], dtype=torch.float32)
_GELU_SLOPES = _float16_values([slope for _, slope, _ in GELU_TABLE])
_GELU_INTERCEPTS = _float16_values([intercept for _, _, intercept in GELU_TABLE])


def _fma(a: torch.Tensor, b, c) -> torch.Tensor:
    """a * b + c in float32 with one rounding, as the SFPU's multiply-add (the product is exact in float64)."""
    return (a.double() * b + c).float()


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """The SFPU's approximate GELU (the seed's fused `(GELU, True)`), float32: x / 2 plus a piecewise-linear
    function of |x| over six bins, which keeps the result's own sign."""
    x = x.float()
    magnitude = x.abs()
    bins = torch.bucketize(magnitude, _GELU_EDGES.to(x.device), right=True)
    table = _fma(magnitude, _GELU_SLOPES.to(x.device)[bins], _GELU_INTERCEPTS.to(x.device)[bins])
    return x * 0.5 + table


# The approximate exp (sfpu ckernel_sfpu_exp.h, exp_init in approximate mode): round(A * max(x, -88.5) + (B - C))
# to an unsigned 16-bit integer and shift it into a float32's sign/exponent/mantissa bits (Schraudolph's method).
EXP_LOWEST = -88.5
EXP_SLOPE = 256.0 / math.log(2.0)  # 2^8 / ln 2, as float32 0x43b8aa3b
EXP_OFFSET = 32500.818359375  # 127 * 2^8 minus an adjustment of about 11.2
EXP_SHIFT = 15


def exp_fast(x: torch.Tensor) -> torch.Tensor:
    """The SFPU's approximate exp, float32: the rounded integer (ties away from zero, magnitude saturated to
    16 bits) shifted left by 15 bits is the result's bit pattern."""
    clamped = x.float().clamp(min=EXP_LOWEST)
    scaled = _fma(clamped, float(torch.tensor(EXP_SLOPE, dtype=torch.float32)), EXP_OFFSET).abs()
    integer = torch.floor(scaled + 0.5).clamp_(max=65535).to(torch.int32)
    return (integer << EXP_SHIFT).view(torch.float32)


# The reciprocal's quadratic estimate on [1, 2) (sfpu ckernel_sfpu_recip.h, the shared minimax seed).
RECIPROCAL_SEED = (0.3232325017452239990234375, 1.4545459747314453125, 2.121212482452392578125)


def reciprocal_fast(x: torch.Tensor) -> torch.Tensor:
    """The SFPU's approximate reciprocal of positive finite float32 values: a quadratic estimate for the
    mantissa m in [1, 2) and one Newton step, scaled by the exponent (each step one float32 multiply-add)."""
    x = x.float()
    exponent = torch.frexp(x).exponent - 1  # x = m * 2^exponent, m in [1, 2)
    m = torch.ldexp(x, -exponent)
    k0, k1, k2 = RECIPROCAL_SEED
    estimate = _fma(-m, k0, k1)
    estimate = _fma(estimate, -m, k2)
    error = _fma(-m, estimate, 1.0)
    estimate = _fma(estimate, error, estimate)
    return torch.ldexp(estimate, -exponent)


@functools.cache
def _table(fn, truncate: bool, device: torch.device) -> torch.Tensor:
    """fn's result for every bfloat16 bit pattern (as an unsigned index), stored as `sfpu` stores it."""
    every = torch.arange(1 << 16, dtype=torch.int32).to(torch.uint16).view(torch.bfloat16).float()
    out = fn(every)
    return (truncate_bfloat16(out).to(torch.bfloat16) if truncate else out).to(device)


def sfpu(fn, x: torch.Tensor, truncate: bool) -> torch.Tensor:
    """`fn` (elementwise, float32 -> float32) as the SFPU runs it over a destination register's values `x`:
    stored truncated into a bfloat16 destination when `truncate` (`truncate_bfloat16`; the result is then
    bfloat16). bfloat16 inputs go through a table of fn's 65,536 results, made once per function: the same
    values in one gather instead of fn's many passes."""
    if x.dtype == torch.bfloat16:
        patterns = x.reshape(-1).view(torch.uint16).to(torch.int32)
        return _table(fn, truncate, x.device).index_select(0, patterns).view(x.shape)
    out = fn(x.float())
    return truncate_bfloat16(out) if truncate else out
