"""BFLOAT8_B against the format's rules (docs/sources.md section 2), not against our own code.

Expected values are worked out by hand in the comments, or by `reference_group`, a deliberately plain
scalar transcription of ttnn's integer recipe (blockfloat_common.cpp) that shares nothing with bertl11.bfp8.
"""

import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertl11 import QAModel, UserError, bfp8, resolve_model
from bertl11.compare import pcc
from conftest import encode


def float_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def reference_group(values):
    """ttnn's host packing of 16 float32 values: (shared exponent byte, 16 data bytes, 16 decoded floats)."""
    bits = [float_bits(v) for v in values]
    shared = max((b >> 23) & 0xFF for b in bits)
    data, decoded = [], []
    for b in bits:
        exponent, sign = (b >> 23) & 0xFF, b >> 31
        if exponent == 0:
            data.append(0)
            decoded.append(0.0)
            continue
        mantissa = (b & 0x7FFFFF) | 0x800000
        shift = shared - exponent
        mantissa = 0 if shift >= 32 else mantissa >> shift
        mantissa = min((mantissa + 0xFFFF + ((mantissa >> 17) & 1)) >> 17, 127)
        data.append(0 if mantissa == 0 else sign << 7 | mantissa)
        decoded.append(0.0 if mantissa == 0 else (-1) ** sign * mantissa * 2.0 ** (shared - 133))
    return shared, data, decoded


def group(*values):
    return torch.tensor(list(values) + [0.0] * (16 - len(values)))


STEP = 2.0**-6  # one magnitude step when the group's largest value is in [1, 2): 2^(127 - 133)

HAND_COMPUTED = {
    # 1/3 = 0xAAAAAB * 2^-25: shifted down 2 binades -> 0x2AAAAA, / 2^17 = 21.33 -> 21 steps.
    "shared exponent": (group(1.0, 1 / 3, 0.75), group(1.0, 21 * STEP, 0.75)),
    # Exact halves between steps go to the even neighbour: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4 steps.
    "ties to even": (
        group(1.0, 0.5 * STEP, 1.5 * STEP, 2.5 * STEP, 3.5 * STEP),
        group(1.0, 0.0, 2 * STEP, 2 * STEP, 4 * STEP),
    ),
    # 2.5 steps + 2^-26 is 1.25 * 2^-5 plus 4 ulps; shifting 5 binades truncates the 4 ulps away, leaving an
    # exact tie that goes down to 2 steps (rounding the exact value would give 3).
    "truncating shift": (group(1.0, 2.5 * STEP + 2.0**-26), group(1.0, 2 * STEP)),
    # +0, -0 and a denormal are 0.
    "zeros": (group(0.0, -0.0, 1e-40, 1.0), group(0.0, 0.0, 0.0, 1.0)),
    # Signs are kept: -0.75 is -48 steps exactly, -1/3 is -21 steps.
    "negative values": (group(-1.0, -0.75, -1 / 3, 0.5), group(-1.0, -0.75, -21 * STEP, 0.5)),
    # 1000 = 1.953125 * 2^9 sets E = 136, a step of 8: 7 -> 0.875 -> 1 step; 12 -> 1.5 -> 2; 20 -> 2.5 -> 2;
    # 4 -> 0.5 -> 0; 1 and 3 are under half a step; 1000 is exactly 125 steps.
    "one large outlier": (group(1000.0, 1.0, 3.0, 4.0, 7.0, 12.0, 20.0, -7.0), group(1000.0, 0, 0, 0, 8.0, 16.0, 16.0, -8.0)),
    # 1.999 is 127.94 steps, rounding to 128, which saturates at 127 (the exponent is not bumped).
    "saturation": (group(1.999, -1.999, 1.0), group(127 * STEP, -127 * STEP, 1.0)),
}


@pytest.mark.parametrize("case", HAND_COMPUTED)
def test_hand_computed_blocks(case):
    values, expected = HAND_COMPUTED[case]
    assert torch.equal(bfp8.quantize(values), expected)
    assert torch.equal(bfp8.quantize(values.bfloat16()), bfp8.quantize(values.bfloat16().float()))


def test_hand_computed_bytes():
    """The outlier group's bytes: exponent 136; 7 -> 1, 12 -> 2, -7 -> 0x81; no 0x80 for the zeros."""
    values, _ = HAND_COMPUTED["one large outlier"]
    tile = torch.zeros(32, 32)
    tile[0, :16] = values
    tile[0, 16] = -0.0
    packed = bfp8.pack(tile)
    assert packed.numel() == 1088
    assert packed[0] == 136 and packed[16] == 0  # face 0 row 0; face 1 row 0 holds only -0.0
    assert packed[64 : 64 + 8].tolist() == [125, 0, 0, 0, 1, 2, 2, 0x81]
    assert packed[64 + 256] == 0  # the -0.0 at (0, 16): face 1, not 0x80


def test_byte_positions_follow_tiles_and_faces():
    """A 1.0 at (r, c) lands at tile (r//32, c//32) in row-major tile order, face (r%32//16, c%32//16),
    face row r%16, column c%16; its exponent byte is 127 and its data byte 64 (1.0 = 64 steps of 2^-6)."""
    rows, cols = 70, 100  # padded to 96 x 128: 3 x 4 tiles
    for r, c in [(0, 0), (5, 17), (20, 3), (31, 31), (33, 64), (69, 99), (40, 70)]:
        x = torch.zeros(rows, cols)
        x[r, c] = 1.0
        packed = bfp8.pack(x)
        assert packed.numel() == 3 * 4 * 1088
        tile = (r // 32) * 4 + c // 32
        face = (r % 32 // 16) * 2 + c % 32 // 16
        exponent_at = tile * 1088 + face * 16 + r % 16
        data_at = tile * 1088 + 64 + face * 256 + (r % 16) * 16 + c % 16
        assert packed.nonzero().flatten().tolist() == sorted([exponent_at, data_at])
        assert (packed[exponent_at], packed[data_at]) == (127, 64)
        assert torch.equal(bfp8.unpack(packed, (rows, cols)), x)


finite = st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6, max_value=1e6)
tiny = st.sampled_from([0.0, -0.0, 1e-40, -3e-39, 1e-35, 2.0**-126, 1e-30])
value = st.one_of(finite, tiny, finite.map(lambda v: v * 1e-3), finite.map(lambda v: v * 1e-30))


@settings(max_examples=60, deadline=None)
@given(st.lists(value, min_size=16, max_size=16), st.integers(0, 3), st.integers(0, 15))
def test_random_groups_match_the_recipe(values, face, row):
    """Any group, placed anywhere in a tile, packs to the recipe's exponent and bytes and decodes to its values."""
    shared, data, decoded = reference_group(values)
    tile = torch.zeros(32, 32)
    r0, c0 = face // 2 * 16 + row, face % 2 * 16
    tile[r0, c0 : c0 + 16] = torch.tensor(values)
    packed = bfp8.pack(tile)
    assert packed[face * 16 + row] == shared
    start = 64 + face * 256 + row * 16
    assert packed[start : start + 16].tolist() == data
    expected = torch.tensor(decoded)
    assert torch.equal(bfp8.unpack(packed, (32, 32))[r0, c0 : c0 + 16], expected)
    assert torch.equal(bfp8.quantize(torch.tensor(values)), expected)


# bfloat16 inputs take their own shorter encoding (`bfp8._quantize_bfloat16`): any finite bfloat16 bit pattern
# under 2^127, so tiny groups (E < 8, left to the general path), denormals, ties and saturation all occur.
bfloat16_bits = st.integers(0, 0x7EFF).map(lambda b: struct.unpack("<f", struct.pack("<I", b << 16))[0])
bfloat16_value = st.one_of(bfloat16_bits, bfloat16_bits.map(lambda v: -v), st.sampled_from([1.9921875, 1.0, 1.5]))


@settings(max_examples=150, deadline=None)
@given(st.lists(bfloat16_value, min_size=16, max_size=16), st.sampled_from([torch.float32, torch.bfloat16]))
def test_bfloat16_groups_match_the_recipe(values, dtype):
    """Groups of bfloat16 values encode like the recipe, returned in either dtype, also inside a large tensor."""
    expected = torch.tensor(reference_group(values)[2])
    assert torch.equal(bfp8.quantize(torch.tensor(values).bfloat16(), dtype).float(), expected)
    many = torch.tensor(values).bfloat16().repeat(40, 8)  # a long tensor, where one tiny group switches paths
    assert torch.equal(bfp8.quantize(many, dtype).float(), expected.repeat(40, 8))


def test_bfloat16_ties_and_saturation():
    """Exact half steps round to even; a largest mantissa of all ones (1.9921875 = 127.5 steps) saturates."""
    values = group(1.9921875, 0.5 * STEP, 1.5 * STEP, 2.5 * STEP, -2.5 * STEP).bfloat16()
    expected = group(127 * STEP, 0.0, 2 * STEP, 2 * STEP, -2 * STEP)
    assert torch.equal(bfp8.quantize(values), expected)


@pytest.mark.parametrize("shape", [(3, 5, 20), (7,), (2, 33, 50), (1, 1, 16)])
def test_quantize_any_shape_pads_with_zeros(shape):
    """Groups are 16 consecutive values of the last axis; a short last group is padded with zeros."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 10
    rows = x.reshape(-1, shape[-1])
    expected = []
    for row in rows.tolist():
        padded = row + [0.0] * (-len(row) % 16)
        decoded = [v for i in range(0, len(padded), 16) for v in reference_group(padded[i : i + 16])[2]]
        expected.append(decoded[: len(row)])
    assert torch.equal(bfp8.quantize(x), torch.tensor(expected).reshape(shape))
    assert torch.equal(bfp8.unpack(bfp8.pack(x), shape), bfp8.quantize(x))


@pytest.mark.parametrize("shape", [(4160, 64), (3, 70, 5000)], ids=["130 tile rows of 2 tiles", "3 x 3 tile rows of 157 tiles"])
def test_unpack_large_tensors_in_bfloat16(shape):
    """Tensors that `unpack` decodes in several steps, with a short last step, decode exactly, in bfloat16."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5)) * torch.logspace(-30, 10, shape[-1])
    decoded = bfp8.unpack(bfp8.pack(x), shape)
    assert decoded.dtype == torch.bfloat16 and decoded.shape == shape
    assert torch.equal(decoded.float(), bfp8.quantize(x))


def test_pack_refuses_non_finite_values():
    with pytest.raises(UserError, match="inf, nan"):
        bfp8.pack(torch.tensor([1.0, float("inf")]))


def test_unpack_checks_the_size():
    with pytest.raises(UserError, match="needs 1088"):
        bfp8.unpack(torch.zeros(1000, dtype=torch.uint8), (32, 32))


@pytest.mark.parametrize("model", ["minilm", pytest.param("large-random-2", marks=pytest.mark.slow)])
def test_bfloat8_b_model_keeps_pcc_against_float32_hf(model, squad_pairs, tmp_path):
    """The seed's default config (BFLOAT8_B weights and activations) against HF in float32: what the format
    costs, with every matmul at HiFi4 (which multiplies BFLOAT8_B values exactly). What the seed's LoFi matmuls
    cost on top is measured in docs/squad.md."""
    source = resolve_model(model)
    batch = encode(source.tokenizer, squad_pairs[:4])
    with torch.no_grad():
        reference = source.hf_model()(**batch)
    ours = QAModel.load(source, "BFLOAT8_B-SHARDED", cache_dir=tmp_path, math_fidelity="HiFi4")
    start, end = ours(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert pcc(start, reference.start_logits) >= 0.99
    assert pcc(end, reference.end_logits) >= 0.99
