"""BFLOAT8_B, Tenstorrent's block-float format, in torch.

A 32x32 tile is four 16x16 faces (top-left, top-right, bottom-left, bottom-right). Each face row of 16 values
shares one 8-bit exponent E (the largest raw fp32 exponent in the group); each value keeps a sign and a 7-bit
magnitude with the leading 1 explicit, so a value decodes as +-m * 2^(E - 133). Encoding follows ttnn's host
packer (tt_metal/impl/data_format/blockfloat_common.cpp): zeros and denormals become 0, the 24-bit mantissa
is shifted down to the shared exponent with a truncating shift, then rounded to nearest-even to 7 bits and
saturated at 127 (the exponent is never bumped); a zero magnitude never keeps its sign (no 0x80 byte).

    quantize(t, dtype)     values rounded through the format, same shape, float32 or bfloat16 (simulation)
    pack(t)                ttnn's host byte order: per 32x32 tile, 64 exponent bytes then 1024 data bytes
    unpack(packed, shape)  the inverse of pack, bfloat16 (which holds every BFLOAT8_B value exactly)

The encoding is float32 arithmetic with power-of-two scalings, truncation and round-half-even only, so each
step is exact and reproduces the integer recipe bit for bit in a few vectorised passes. Byte shuffling runs
in numpy, whose small-integer kernels are several times faster than torch's on CPU.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError

TILE = 32
FACE = 16
GROUP = 16  # values sharing one exponent: one face row
TILE_EXPONENT_BYTES = (TILE // FACE) ** 2 * FACE  # 64
TILE_BYTES = TILE_EXPONENT_BYTES + TILE * TILE  # 1088
MANTISSA_MAX = 127
# The biased exponent field of a float32, and the group exponents (E < 24) under which a denormal input would
# survive the scaling below and has to be flushed explicitly.
_EXPONENT_FIELD = 0x7F800000
_DENORMAL_SAFE_BITS = 24 << 23
_SMALLEST_NORMAL = 2.0**-126
# bfloat16 bits of 2^-119, the smallest group maximum (E = 8) `_quantize_bfloat16` encodes by itself.
_SMALL_GROUP_BFLOAT16_BITS = 8 << 7
# (integer view, mask without the sign bit, shift that puts the exponent where float32 has it) per float type.
_BITS = {torch.float32: (torch.int32, 0x7FFFFFFF, 0), torch.bfloat16: (torch.int16, 0x7FFF, 16)}


def _encode(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., 16] float32/bfloat16 -> (shared exponent [..., 1] as float32 exponent bits in an int32,
    signed 7-bit magnitudes [..., 16] float32).

    With x = m24 * 2^(e - 150), scaling by 2^(150 - E) gives m24 / 2^(E - e), whose truncation is the
    truncating shift; scaling that by 2^-17 and rounding half to even is the rounding to 7 bits. Finite values
    below 2^127 only: a group holding anything else comes out as garbage (`pack` refuses it).
    """
    bits_type, abs_mask, to_float32_bits = _BITS[groups.dtype]
    magnitudes = torch.empty(groups.shape, dtype=torch.float32, device=groups.device)
    # Non-negative floats order like their bit patterns: an integer max finds the largest exponent.
    # (For float32 the output buffer doubles as scratch, since large allocations dominate the cost.)
    scratch = magnitudes.view(torch.int32) if bits_type == torch.int32 else None
    largest = torch.bitwise_and(groups.view(bits_type), abs_mask, out=scratch).amax(dim=-1, keepdim=True)
    largest = largest.to(torch.int32) << to_float32_bits
    if bool(largest.sub(1).bitwise_and_(0x7FFFFFFF).lt_(_DENORMAL_SAFE_BITS - 1).any()):  # 0 < max < 2^-103
        groups = torch.where(groups.abs() < _SMALLEST_NORMAL, 0.0, groups.float())
    shared = largest.bitwise_and_(_EXPONENT_FIELD)
    # 2^(150 - E) as 2^(127 - E) (exponent bits 254 - E) times 2^23, so neither factor leaves float32's range.
    factor = (254 << 23) - shared
    torch.mul(groups, factor.view(torch.float32), out=magnitudes)
    magnitudes.mul_(2.0**23).trunc_().mul_(2.0**-17).round_().clamp_(-MANTISSA_MAX, MANTISSA_MAX)
    return shared, magnitudes


def _scale(shared: torch.Tensor) -> torch.Tensor:
    """2^(E - 133), the value of one magnitude step (exact; a denormal for E < 7, 0 for E = 0)."""
    return shared.view(torch.float32) * 2.0**-6


def _float_input(t: torch.Tensor) -> torch.Tensor:
    x = t.detach()
    return x if x.dtype in _BITS else x.float()


def _quantize_bfloat16(groups: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """`quantize` of [..., 16] bfloat16 groups in four passes, or None where a group needs `_encode`.

    A bfloat16 value is m8 * 2^(e - 134) with an 8-bit m8, so the 24-bit mantissa's low 16 bits are zero and
    the truncating shift by d = E - e loses nothing until d > 16, where the value is under 2^-10 steps and
    rounds to 0 either way: the encoding is round-half-even(x * 2^(133 - E)), saturated. A denormal under a
    group exponent E >= 8 scales below half a step and flushes by itself; groups with 0 < E < 8 (values
    under 2^-119) are left to the general path.
    """
    largest = torch.bitwise_and(groups.view(torch.int16), 0x7FFF).amax(dim=-1, keepdim=True).to(torch.int32)
    if bool(largest.sub(1).bitwise_and_(0x7FFFFFFF).lt_(_SMALL_GROUP_BFLOAT16_BITS - 1).any()):  # 0 < max < 2^-119
        return None
    shared = (largest << 16).bitwise_and_(_EXPONENT_FIELD)
    # 2^(133 - E) is exponent field 260 - E; all-zero groups (E = 0) take 2^127 instead, harmlessly.
    factor = ((260 << 23) - shared).clamp_(max=254 << 23).view(torch.float32)
    # In place on one float32 copy: mixed-dtype and allocating kernels cost about twice as much on CPU.
    values = groups.float()
    values.mul_(factor).round_().clamp_(-MANTISSA_MAX, MANTISSA_MAX).mul_(_scale(shared))
    return values.to(dtype)


def quantize(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values rounded through BFLOAT8_B, as a device would hold them: same shape and device, in `dtype`
    (float32 or bfloat16, both of which hold every BFLOAT8_B value exactly).

    Groups are 16 consecutive values along the last axis (a face row), so only the last axis needs padding
    (with zeros, as ttnn pads) and rows never interact. Groups holding inf/nan come back as nan.
    """
    x = _float_input(t)
    shape = x.shape
    width = shape[-1] if x.dim() else 1
    pad = -width % GROUP
    x = F.pad(x.reshape(-1, width), (0, pad)) if pad else x.reshape(-1, width)
    groups = x.reshape(x.shape[0], -1, GROUP)
    out = _quantize_bfloat16(groups, dtype) if x.dtype == torch.bfloat16 else None
    if out is None:
        shared, magnitudes = _encode(groups)
        out = magnitudes.mul_(_scale(shared)).to(dtype)
    out = out.reshape(x.shape)
    return (out[:, :width] if pad else out).reshape(shape)


def as_matrix(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """ttnn holds a 1D [N] as [1, N] and a scalar as [1, 1]."""
    return tuple(shape) if len(shape) >= 2 else (1, math.prod(shape))


def padded_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The shape ttnn's tile layout holds: the last two axes of `as_matrix(shape)` padded to 32."""
    *batch, rows, cols = as_matrix(shape)
    return (*batch, rows + -rows % TILE, cols + -cols % TILE)


def packed_size(shape: torch.Size | tuple[int, ...]) -> int:
    """Bytes `pack` produces for a tensor of this shape."""
    return math.prod(padded_shape(shape)) // (TILE * TILE) * TILE_BYTES


def _tile_axes(padded: tuple[int, ...]) -> tuple[int, ...]:
    """[..., R, C] split as (batch, tile row, face row, row in face, tile col, face col, column in face)."""
    *batch, rows, cols = padded
    return (math.prod(batch), rows // TILE, 2, FACE, cols // TILE, 2, FACE)


# From the axes of `_tile_axes` to ttnn's order (batch, tile row, tile col, face row, face col, row, col).
_TO_TILE_ORDER = (0, 1, 4, 2, 5, 3, 6)


def pack(t: torch.Tensor) -> torch.Tensor:
    """ttnn's host-side BFLOAT8_B packing: a flat uint8 tensor of `packed_size(t.shape)` bytes.

    Tiles go in row-major tile order over the last two axes padded to 32 with zeros (leading axes outermost);
    each tile is 64 shared exponents (face by face, row by row) then 1024 sign-magnitude bytes in that order.
    """
    padded = padded_shape(t.shape)
    x = _float_input(t).cpu().reshape(as_matrix(t.shape))
    x = F.pad(x, (0, padded[-1] - x.shape[-1], 0, padded[-2] - x.shape[-2]))
    shared, magnitudes = _encode(x.reshape(*x.shape[:-1], -1, GROUP))
    if bool((shared >= 254 << 23).any()):
        raise UserError("BFLOAT8_B cannot hold inf, nan or values of magnitude 2^127 and above")
    signed = magnitudes.numpy().astype(np.int8)
    data = np.abs(signed).view(np.uint8) | ((signed < 0).view(np.uint8) << 7)
    axes = _tile_axes(padded)
    data = data.reshape(axes).transpose(_TO_TILE_ORDER).reshape(-1, TILE * TILE)
    exponents = (shared >> 23).numpy().astype(np.uint8).reshape(axes[:-1]).transpose(_TO_TILE_ORDER[:-1])
    return torch.from_numpy(np.concatenate([exponents.reshape(-1, TILE_EXPONENT_BYTES), data], axis=1).reshape(-1))


# 2^(E - 133) for every exponent byte E: the value of one magnitude step (exact; denormal for E < 7, 0 for E = 0).
_STEP = _scale(torch.arange(256, dtype=torch.int32) << 23).numpy()
# One face row (16 bytes) as one item, so reordering tiles into rows moves 16 bytes per step rather than one.
_FACE_ROW = np.dtype((np.void, GROUP))
# Which int16 of a float32 holds its sign, exponent and top 7 mantissa bits: its bfloat16 truncation.
_HIGH_HALF = 1 if sys.byteorder == "little" else 0
# Tile rows decoded per step: enough to amortise the per-call overhead, few enough for the scratch to stay in cache.
_CHUNK_VALUES = 1 << 18


def unpack(packed: torch.Tensor | bytes, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Bytes laid out as `pack` writes them -> bfloat16 CPU tensor of the given (unpadded) shape.

    bfloat16 holds every BFLOAT8_B value exactly (at most 8 significant bits; the smallest step, 2^-132, is
    a bfloat16 denormal), at half the memory of float32. Decoding runs a few tile rows at a time: face rows are
    moved into row order as 16-byte items, sign-magnitude becomes two's complement in place, a broadcast
    multiply by each row's step gives exact float32 values, and their upper halves are the bfloat16 ones.
    All in numpy, single-threaded: the cache loads files on a thread per core, and torch's own threads
    inside those made a BERT-large load about 15% slower.
    """
    shape = tuple(shape)
    raw = np.frombuffer(packed, dtype=np.uint8) if isinstance(packed, (bytes, bytearray, memoryview)) else packed.cpu().numpy()
    if raw.size != packed_size(shape):
        raise UserError(f"BFLOAT8_B data holds {raw.size} bytes; shape {list(shape)} needs {packed_size(shape)}")
    padded = padded_shape(shape)
    batch, tile_rows, _, _, tile_cols, _, _ = _tile_axes(padded)
    tiles = raw.reshape(batch * tile_rows, tile_cols, TILE_BYTES)
    out = torch.empty(padded, dtype=torch.bfloat16)
    # Row order, split as (tile row, face row, row in face, tile col, face col, column in face).
    out_rows = out.view(batch * tile_rows, 2, FACE, tile_cols, 2, FACE)
    rows_per_step = min(max(1, _CHUNK_VALUES // (TILE * padded[-1])), batch * tile_rows)
    # Scratch for one step, allocated once: the allocator returns freed temporaries of this size to the kernel,
    # and faulting their pages in again at every step would cost more than the decoding.
    groups = (rows_per_step, 2, FACE, tile_cols, 2)  # one entry per face row, in row order
    signed, negative, mask = (np.empty((*groups, FACE), np.int8) for _ in range(3))
    exponents = np.empty(groups, np.uint8)
    steps = np.empty(groups, np.float32)
    products = np.empty((*groups, FACE), np.float32)
    out_bits = out_rows.view(torch.int16).numpy()
    for first in range(0, batch * tile_rows, rows_per_step):
        chunk = tiles[first : first + rows_per_step]
        count = chunk.shape[0]
        # In a tile: exponents, then data, each ordered (face row, face col, row in face).
        tile_order = (count, tile_cols, 2, 2, FACE)
        to_row_order = (0, 2, 4, 1, 3)
        np.copyto(exponents[:count], chunk[..., :TILE_EXPONENT_BYTES].reshape(tile_order).transpose(to_row_order))
        face_rows = chunk[..., TILE_EXPONENT_BYTES:].view(_FACE_ROW).reshape(tile_order).transpose(to_row_order)
        np.copyto(signed[:count].view(_FACE_ROW)[..., 0], face_rows)
        values = signed[:count]  # sign-magnitude -> two's complement, a zero magnitude always 0:
        np.right_shift(values, 7, out=negative[:count])  # 0 or -1
        np.bitwise_and(negative[:count], MANTISSA_MAX, out=mask[:count])
        np.bitwise_xor(values, mask[:count], out=values)
        np.subtract(values, negative[:count], out=values)
        np.take(_STEP, exponents[:count], out=steps[:count], mode="clip")
        np.multiply(values, steps[:count, ..., None], out=products[:count])
        np.copyto(out_bits[first : first + count], products[:count].view(np.int16)[..., _HIGH_HALF::2])
    rows, cols = as_matrix(shape)[-2:]
    if (rows, cols) != padded[-2:]:
        out = out[..., :rows, :cols].contiguous()
    return out.reshape(shape)
