"""The Tensix FPU's arithmetic (`bertl11.fpu`) against scalar transcriptions of the rules tenstorrent publishes
(docs/sources.md, "The Tensix FPU"), and the simulation's matmul ops against them: the fidelity phases of
tt-isa-documentation's ELWMUL/MVMUL functional model on arbitrary bit patterns, each fidelity and each operand
side; the destination's rounding; the SFPU's fast GELU, exp and reciprocal; the compute settings per op."""

import math
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertl11 import fpu, machine
from bertl11.backends.torch import TorchOps, round_to
from bertl11.config import BFLOAT16, MATH_FIDELITIES, RUN_CONFIGS, BertShape, ComputeSettings, get_run_config
from bertl11.errors import UserError
from bertl11.ops import BATCHED_MATMUL, DATA_MOVEMENT, HEAD, LINEAR, OPS


def bits_of(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def value_of(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def float32(x: float) -> float:
    """x rounded to the nearest float32 (ties to even), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# tt-isa-documentation, WormholeB0 ELWMUL.md "Supporting definitions" (MVMUL uses the same): the bits of an
# operand each fidelity phase multiplies, transcribed.
def src_a_fidelity_bits(x: float, phase: int) -> float:
    if phase & 1 == 0:
        return value_of(bits_of(x) & 0xFFF80000)  # sign, exponent, implicit 1, next four mantissa bits
    return x - value_of(bits_of(x) & 0xFFF83FFF)


def src_b_fidelity_bits(x: float, phase: int) -> float:
    if phase & 2 == 0:
        return value_of(bits_of(x) & 0xFFFE0000)  # sign, exponent, implicit 1, next six mantissa bits
    return x - value_of(bits_of(x) & 0xFFFE1FFF)


PHASE_COUNT = {"LoFi": 1, "HiFi2": 2, "HiFi3": 3, "HiFi4": 4}  # LoFi = phase 0 ... HiFi4 = phases 0-3 (llk_math_matmul.h)


def rule_product(in0: list[list[float]], in1: list[list[float]], fidelity: str, sides=(src_b_fidelity_bits, src_a_fidelity_bits)):
    """in0 @ in1 by the documented rule, exactly (Python floats): in0 in SrcB, in1 in SrcA, the phases summed."""
    b_bits, a_bits = sides
    return [[sum(a_bits(in1[k][j], p) * b_bits(row[k], p) for k in range(len(row)) for p in range(PHASE_COUNT[fidelity]))
             for j in range(len(in1[0]))] for row in in0]


def is_finite_bfloat16(pattern: int) -> bool:
    return pattern & 0x7F80 != 0x7F80


ANY_BFLOAT16 = st.integers(0, 0xFFFF).filter(is_finite_bfloat16)
# Normal values whose products and sums stay far from float32's underflow and overflow.
MODERATE_BFLOAT16 = st.tuples(st.integers(0, 1), st.integers(127 - 20, 127 + 20), st.integers(0, 127)).map(
    lambda t: (t[0] << 15) | (t[1] << 7) | t[2])


def bfloat16_values(patterns) -> torch.Tensor:
    return torch.tensor(patterns, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_BFLOAT16, min_size=1, max_size=64), st.sampled_from([fpu.SRC_A, fpu.SRC_B]), st.integers(0, 3))
def test_phase_operands_follow_the_documented_bits(patterns, side, phase):
    values = bfloat16_values(patterns)
    rule = src_a_fidelity_bits if side == fpu.SRC_A else src_b_fidelity_bits
    expected = [rule(v, phase) for v in values.float().tolist()]
    for held in (values, values.float()):  # bfloat16 and float32 GEMM operands alike
        assert fpu.phase_operand(held, side, phase).float().tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(MATH_FIDELITIES), st.integers(1, 4), st.integers(1, 8), st.integers(1, 4))
def test_matmul_is_the_sum_of_the_fidelity_phases(data, fidelity, m, k, n):
    """in0 in SrcB and in1 in SrcA, every fidelity: exactly the rule for one product, within float32 summation
    for several."""
    in0 = bfloat16_values(data.draw(st.lists(MODERATE_BFLOAT16, min_size=m * k, max_size=m * k))).float().view(m, k)
    in1 = bfloat16_values(data.draw(st.lists(MODERATE_BFLOAT16, min_size=k * n, max_size=k * n))).float().view(k, n)
    expected = torch.tensor(rule_product(in0.tolist(), in1.tolist(), fidelity), dtype=torch.float64)
    ours = fpu.matmul(in0, in1, fidelity).double()
    if k == 1:
        assert torch.equal(ours, expected.float().double())
        assert torch.equal(fpu.matmul(in0.bfloat16(), in1.bfloat16(), fidelity).float(), expected.bfloat16().float())
    magnitude = torch.tensor(rule_product(in0.abs().tolist(), in1.abs().tolist(), "HiFi4"), dtype=torch.float64)
    assert torch.all((ours - expected).abs() <= magnitude * 2.0**-21)
    if fidelity == "LoFi":  # weights cut once at load give the same product
        assert torch.equal(fpu.matmul(in0, fpu.high_part(in1, fpu.SRC_A), fidelity, in1_cut=True), fpu.matmul(in0, in1, fidelity))


def test_the_sides_differ():
    """SrcB keeps 7 significant bits at LoFi, SrcA 5: the same two numbers multiply differently by side."""
    seven_bits, one = torch.tensor([[1 + 2.0**-6]]), torch.tensor([[1.0]])
    assert fpu.matmul(seven_bits, one, "LoFi").item() == 1 + 2.0**-6  # in0 -> SrcB keeps it
    assert fpu.matmul(one, seven_bits, "LoFi").item() == 1.0  # in1 -> SrcA drops the last two bits
    assert fpu.matmul(one, seven_bits, "HiFi2").item() == 1 + 2.0**-6  # phase 1 adds SrcA's low bits


# ------------------------------------------------------------------ the simulation's matmul ops

SHAPE = BertShape(vocab_size=64, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128,
                  max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")
LAYER = "bert.encoder.layer.0."


def eight_bit_values(generator, *size) -> torch.Tensor:
    """Values with at most 8 significant bits (exact in bfloat16): their cut products, and sums of up to 2^8 of
    them, are exact in float32, so every order of summation gives the same numbers."""
    return torch.randint(-255, 256, size, generator=generator).float() * 2.0**-8


def rounded(t: torch.Tensor) -> torch.Tensor:
    """Through bfloat16: the destination, and BFLOAT16-DRAM's storage."""
    return round_to(t.float(), BFLOAT16, torch.float32)


def rule_matmul(in0: torch.Tensor, in1: torch.Tensor, fidelity: str, swapped: bool = False) -> torch.Tensor:
    """The rule's product over the last two axes (`swapped`: in0 in SrcA and in1 in SrcB, the wrong way round)."""
    sides = (src_a_fidelity_bits, src_b_fidelity_bits) if swapped else (src_b_fidelity_bits, src_a_fidelity_bits)
    lead = in0.shape[:-2]
    a, b = in0.reshape(-1, *in0.shape[-2:]), in1.expand(*lead, *in1.shape[-2:]).reshape(-1, *in1.shape[-2:])
    out = [torch.tensor(rule_product(x.tolist(), y.tolist(), fidelity, sides)) for x, y in zip(a, b)]
    return torch.stack(out).reshape(*lead, in0.shape[-2], in1.shape[-1]).float()


MATMUL_OPS = ["qkv", "self_output", "ff2", "q_kt", "attention_v", "qa_head"]


def op_case(name: str, generator):
    """(call the op on ops, its in0, in1, bias or None) with inputs of the op's shapes, handed over as ops holds
    activations."""
    batch, seq, hidden, ffn = 1, 32, SHAPE.hidden_size, SHAPE.intermediate_size
    heads, head = SHAPE.num_heads, SHAPE.head_size
    if name == "q_kt":
        q, k_t = eight_bit_values(generator, batch, heads, seq, head), eight_bit_values(generator, batch, heads, head, seq)
        return (lambda ops, params: ops.q_kt(q.to(ops.held_dtype), k_t.to(ops.held_dtype))), q, k_t, None
    if name == "attention_v":
        probs, v = eight_bit_values(generator, batch, heads, seq, seq), eight_bit_values(generator, batch, heads, seq, head)
        return (lambda ops, params: ops.attention_v(probs.to(ops.held_dtype), v.to(ops.held_dtype))), probs, v, None
    k, n, prefix = {"qkv": (hidden, 3 * hidden, LAYER + "attention.self.qkv"),
                    "self_output": (hidden, hidden, LAYER + "attention.output.dense"),
                    "ff2": (ffn, hidden, LAYER + "output.dense"), "qa_head": (hidden, 2, "qa_outputs")}[name]
    x, weight, bias = eight_bit_values(generator, batch, seq, k), eight_bit_values(generator, k, n), eight_bit_values(generator, n)

    def call(ops, params):
        return getattr(ops, name)(x.to(ops.held_dtype), params(ops, {f"{prefix}.weight": weight, f"{prefix}.bias": bias}, prefix))

    return call, x, weight, bias


def prepared(ops, flat, prefix):
    """The op's parameters as `prepare` makes them (weights cut at load where the fidelity is LoFi)."""
    node = ops.prepare(flat)
    for part in prefix.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def expected_output(name: str, product: torch.Tensor, bias: torch.Tensor | None):
    """The op's output from its matmul's exact product: the destination's bfloat16, the bias (its own add in
    the QA head), BFLOAT16-DRAM's storage."""
    if bias is None:
        return rounded(product)
    out = rounded(rounded(product) + bias)
    return (out[..., 0], out[..., 1]) if name == "qa_head" else out


@pytest.mark.parametrize("mode", machine.GEMM_DTYPES)
@pytest.mark.parametrize("name", MATMUL_OPS)
def test_matmul_ops_cut_each_operand_on_its_side(name, mode, monkeypatch):
    """Every matmul of the simulation equals the documented rule with in0 (activations, Q, probabilities) in
    SrcB and in1 (weights, K^T, V) in SrcA, at the seed's fidelity and at each --math-fidelity. At LoFi the
    rule's numbers differ from the uncut product and from the sides swapped, so skipping the cut, or cutting
    the wrong operand, fails here."""
    monkeypatch.setenv(machine.GEMM_DTYPE_VARIABLE, mode)
    generator = torch.Generator().manual_seed(MATMUL_OPS.index(name))
    call, in0, in1, bias = op_case(name, generator)
    for fidelity in (None, *MATH_FIDELITIES):
        config = get_run_config("BFLOAT16-DRAM", fidelity)
        ops = TorchOps(SHAPE, config)
        with torch.inference_mode():
            ours = call(ops, prepared)
        rule = rule_matmul(in0, in1, config.compute(name).math_fidelity)
        expected = expected_output(name, rule, bias)
        for got, want in zip(ours if name == "qa_head" else (ours,), expected if name == "qa_head" else (expected,)):
            assert torch.equal(got.float(), want), f"{name} at {fidelity or 'the seed fidelity'}"
        if config.compute(name).math_fidelity == "LoFi":
            uncut = expected_output(name, torch.matmul(in0, in1), bias)
            swapped = expected_output(name, rule_matmul(in0, in1, "LoFi", swapped=True), bias)
            for wrong in (uncut, swapped):
                assert not all(torch.equal(a, b) for a, b in zip(*(x if name == "qa_head" else (x,) for x in (expected, wrong))))


def test_float32_is_the_exact_reference():
    """FLOAT32 runs none of the card's arithmetic, and refuses a fidelity."""
    config = get_run_config("FLOAT32")
    assert all(config.compute(op) is None for op in OPS)
    generator = torch.Generator().manual_seed(5)
    call, in0, in1, _ = op_case("q_kt", generator)
    with torch.inference_mode():
        assert torch.equal(call(TorchOps(SHAPE, config), prepared), torch.matmul(in0, in1))
    with pytest.raises(UserError, match="FLOAT32 is the exact reference"):
        get_run_config("FLOAT32", "LoFi")


# ------------------------------------------------------------------ the destination

def round_half_away(x: float, significant_bits: int) -> float:
    """x rounded to `significant_bits` significant bits, to nearest, ties away from zero (exact arithmetic)."""
    if x == 0:
        return x
    exponent = math.floor(math.log2(abs(x)))
    step = 2.0 ** (exponent - significant_bits + 1)
    return math.copysign(math.floor(abs(x) / step + 0.5) * step, x)


def rule_round_dst(x: float) -> float:
    """tt-metal's account of a bfloat16 destination's rounding: to TF32 (11 significant bits), then to bfloat16
    (8), each to nearest with ties away from zero."""
    return round_half_away(round_half_away(x, 11), 8)


NORMAL_FLOAT32 = st.integers(1 << 23, 0x7F000000 - 1).flatmap(lambda b: st.sampled_from([b, b | 0x80000000]))


@settings(max_examples=300, deadline=None)
@given(st.lists(NORMAL_FLOAT32, min_size=1, max_size=64))
def test_destination_rounding(patterns):
    values = [value_of(b) for b in patterns]
    ours = fpu.round_dst(torch.tensor(values, dtype=torch.float32)).tolist()
    assert ours == [rule_round_dst(v) for v in values]


def rule_dst_matmul(in0, in1, fidelity, k_block):
    """MVMUL by MVMUL (16 K-products of one phase each, the destination rounded after each add), phases inside
    each 32-wide K tile, K blocks added in L1 in bfloat16."""
    k = len(in0[0])
    out = []
    for row in in0:
        out_row = []
        for j in range(len(in1[0])):
            total = None
            for first in range(0, k, 32 * k_block):
                dst = None
                for tile in range(first, first + 32 * k_block, 32):
                    for p in range(PHASE_COUNT[fidelity]):
                        for start in (tile, tile + 16):
                            chunk = sum(src_a_fidelity_bits(in1[kk][j], p) * src_b_fidelity_bits(row[kk], p)
                                        for kk in range(start, start + 16))
                            dst = rule_round_dst(chunk if dst is None else dst + chunk)
                total = dst if total is None else rule_round_dst(total + dst)
            out_row.append(total)
        out.append(out_row)
    return out


@pytest.mark.parametrize("fidelity", MATH_FIDELITIES)
@pytest.mark.parametrize("k_block", [1, 2])
def test_dst_matmul_rounds_every_mvmul(fidelity, k_block):
    generator = torch.Generator().manual_seed(7)
    in0, in1 = eight_bit_values(generator, 3, 128), eight_bit_values(generator, 128, 5)
    expected = torch.tensor(rule_dst_matmul(in0.tolist(), in1.tolist(), fidelity, k_block))
    ours = fpu.dst_matmul(in0, in1, fidelity, k_block)
    assert torch.equal(ours, expected)
    assert not torch.equal(ours, rounded(rule_matmul(in0, in1, fidelity)))  # one rounding at the end differs


# ------------------------------------------------------------------ the SFPU's approximations

# The fast GELU's table as tt-llk (1ae34a409, 2024) loads it: pairs of FP16 words, low half first
# (`_sfpu_load_imm32_`): slopes in LReg0-2, intercepts in LReg4-6; 0x7c00 decodes to 0 (Lut16ToFp32).
GELU_SLOPE_WORDS = (0x37E7322B, 0x38E138F3, 0x38003852)
GELU_INTERCEPT_WORDS = (0xB12286D8, 0xB437B479, 0x7C00AFA4)
GELU_BINS = (0.5, 1.0, 1.5, 2.0, 3.0)  # SFPLUTFP32 FP16_6ENTRY_TABLE1: [0, .5), [.5, 1), [1, 1.5), [1.5, 2), [2, 3), [3, inf)


def fp16_words(words) -> list[float]:
    halves = [half for word in words for half in (word & 0xFFFF, word >> 16)]
    return [0.0 if half & 0x7C00 == 0x7C00 else struct.unpack("<e", struct.pack("<H", half))[0] for half in halves]


def rule_gelu_fast(x: float) -> float:
    """x / 2 + (slope * |x| + intercept) of |x|'s bin, the table's result keeping its own sign."""
    slopes, intercepts = fp16_words(GELU_SLOPE_WORDS), fp16_words(GELU_INTERCEPT_WORDS)
    bin_ = sum(abs(x) >= edge for edge in GELU_BINS)
    return float32(float32(x * 0.5) + float32(slopes[bin_] * abs(x) + intercepts[bin_]))


def test_gelu_table_is_the_devices():
    assert fpu._GELU_SLOPES.tolist() == fp16_words(GELU_SLOPE_WORDS)
    assert fpu._GELU_INTERCEPTS.tolist() == fp16_words(GELU_INTERCEPT_WORDS)


def rule_exp_fast(x: float) -> float:
    """Schraudolph's exp as the SFPU runs it: A * max(x, -88.5) + (B - C) in one float32 rounding, rounded to an
    unsigned 16-bit integer (ties away from zero, magnitude saturated), shifted into a float32's top bits."""
    t = float32(value_of(0x43B8AA3B) * max(x, -88.5) + value_of(0x46FDE9A3))
    return value_of(min(math.floor(abs(t) + 0.5), 65535) << 15)


def rule_reciprocal_fast(x: float) -> float:
    """The quadratic estimate on the mantissa m in [1, 2) and one Newton step, each step one float32 rounding."""
    m, exponent = math.frexp(x)
    m, exponent = m * 2, exponent - 1
    k0, k1, k2 = (value_of(bits_of(c)) for c in fpu.RECIPROCAL_SEED)
    y = float32(k1 - k0 * m)
    y = float32(k2 - y * m)
    t = float32(1.0 - m * y)
    return math.ldexp(float32(y + y * t), -exponent)


EVERY_BFLOAT16 = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


@pytest.mark.parametrize("fn, rule, domain", [
    (fpu.gelu_fast, rule_gelu_fast, lambda v: True),
    (fpu.exp_fast, rule_exp_fast, lambda v: v < 88.0),
    (fpu.reciprocal_fast, rule_reciprocal_fast, lambda v: 2.0**-120 < v < 2.0**120),
])
def test_approximations_follow_their_rules_on_every_bfloat16(fn, rule, domain):
    """On every finite bfloat16 input of the domain (the SFPU reads them from a bfloat16 destination): the
    rule's value exactly, and through `fpu.sfpu`'s table the same values stored as a bfloat16 destination holds
    them (truncated, denormals flushed)."""
    values = EVERY_BFLOAT16.float()
    keep = torch.tensor([math.isfinite(v) and domain(v) for v in values.tolist()])
    inputs = values[keep]
    ours = fn(inputs)
    assert ours.tolist() == [rule(v) for v in inputs.tolist()]
    stored = fpu.sfpu(fn, EVERY_BFLOAT16[keep], truncate=True)
    assert stored.dtype == torch.bfloat16 and torch.equal(stored.float(), fpu.truncate_bfloat16(ours))
    assert torch.equal(fpu.sfpu(fn, EVERY_BFLOAT16[keep], truncate=False), ours)


def test_approximations_are_close_to_the_functions():
    """What they cost: the fast GELU is off by up to 0.024 (near |x| = 0.25), the exp by up to 3.2 %, the
    reciprocal by up to 0.011 %."""
    x = torch.linspace(-6, 6, 12001)
    assert (fpu.gelu_fast(x) - torch.nn.functional.gelu(x)).abs().max() < 0.024
    y = torch.linspace(-20, 10, 30001)
    assert ((fpu.exp_fast(y).double() / torch.exp(y.double())) - 1).abs().max() < 0.032
    z = torch.exp(torch.linspace(-5, 7, 10001))
    assert ((fpu.reciprocal_fast(z).double() * z) - 1).abs().max() < 1.1e-4


def test_truncation_into_bfloat16():
    values = torch.tensor([1 + 2.0**-7 + 2.0**-9, -(1 + 2.0**-7 + 2.0**-9), 2.0**-127, 3.0])
    assert fpu.truncate_bfloat16(values).tolist() == [1 + 2.0**-7, -(1 + 2.0**-7), 0.0, 3.0]


# ------------------------------------------------------------------ the compute settings

def test_seed_settings_per_op():
    config = get_run_config("BFLOAT8_B-SHARDED")
    for name, op in OPS.items():
        settings_ = config.compute(name)
        if op.kind == DATA_MOVEMENT:
            assert settings_ is None
        elif op.kind in (LINEAR, BATCHED_MATMUL, HEAD):
            assert (settings_.math_fidelity, settings_.math_approx_mode, settings_.packer_l1_acc) == ("LoFi", False, True)
    assert config.compute("softmax") == ComputeSettings("HiFi4", True, False, False)
    assert config.compute("attention_add_layernorm") == ComputeSettings("HiFi4", True, False, False)
    assert config.compute("embeddings") == ComputeSettings("HiFi4", False, True, False)
    # The QA head has no program config: LoFi only where both operands are BFLOAT8_B.
    assert {name: c.compute("qa_head").math_fidelity for name, c in RUN_CONFIGS.items() if not c.torch_only} == {
        "BFLOAT8_B-SHARDED": "LoFi", "BFLOAT8_B-DRAM": "LoFi", "BFLOAT8_B-L1": "LoFi", "BFLOAT16-DRAM": "HiFi2",
        "BFLOAT16-L1": "HiFi2", "MIXED_PRECISION_BATCH8": "HiFi2", "MIXED_PRECISION_BATCH9": "HiFi2"}


def test_math_fidelity_sets_the_matmuls_only():
    config = get_run_config("BFLOAT16-DRAM", "HiFi3")
    for name, op in OPS.items():
        if op.kind in (LINEAR, BATCHED_MATMUL, HEAD):
            assert config.compute(name).math_fidelity == "HiFi3"
    assert config.compute("softmax") == get_run_config("BFLOAT16-DRAM").compute("softmax")
    with pytest.raises(UserError, match="math fidelity 'HiFi5': choose one of LoFi, HiFi2, HiFi3, HiFi4"):
        get_run_config("BFLOAT16-DRAM", "HiFi5")


def test_kernel_config_fields_per_arch():
    """The fields a ttnn op's compute kernel config takes for a chip: all four on Wormhole and Blackhole (one
    class in ttnn 0.81), fidelity and approximation only on Grayskull (the seed era's class)."""
    config = get_run_config("BFLOAT8_B-SHARDED")
    expected = {"math_fidelity": "LoFi", "math_approx_mode": False, "fp32_dest_acc_en": False, "packer_l1_acc": True}
    for arch in ("wormhole_b0", "blackhole"):
        assert config.kernel_config("ff2", arch) == expected
        assert config.kernel_config("attention_add_layernorm", arch) == {
            "math_fidelity": "HiFi4", "math_approx_mode": True, "fp32_dest_acc_en": False, "packer_l1_acc": False}
    assert config.kernel_config("softmax", "grayskull") == {"math_fidelity": "HiFi4", "math_approx_mode": True}
    assert config.kernel_config("split_heads", "wormhole_b0") is None
    assert get_run_config("BFLOAT8_B-SHARDED", "HiFi4").kernel_config("qkv", "blackhole")["math_fidelity"] == "HiFi4"
    with pytest.raises(UserError, match="no compute kernel config for architecture 'quasar'"):
        config.kernel_config("qkv", "quasar")
