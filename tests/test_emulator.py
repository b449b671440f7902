"""The grid emulator backend runs each plan core by core, driven by model.py, and must equal the dense torch
encoder layer with the same arithmetic (the plan config's operand cuts and approximations, in float64).

BERT-large shapes (seq 384, hidden 1024, 16 heads, FFN 4096), one encoder layer with random weights. Every
supported (card, batch, config) is planned and emulated; to stay within the test budget, each emulation does
the arithmetic for the last sequence of the batch (the cores with the largest coordinates) while every core's
blocks are checked for coverage, and identical programs with identical arithmetic on identical data are
emulated once.
"""

from dataclasses import replace

import pytest
import torch

from bertl11.backends.emulator import EMULATION_DTYPE, EmulationError, GridEmulator
from bertl11.backends.torch import TorchOps
from bertl11.cards import CARDS
from bertl11.config import RUN_CONFIGS, BertShape, get_run_config
from bertl11.model import encoder_layer
from bertl11.ops import ENCODER_OPS
from bertl11.plan import make_plan

pytestmark = pytest.mark.slow

SEQ, HIDDEN, HEADS, FFN = 384, 1024, 16, 4096
MAX_BATCH = max(c.batch_range[1] for c in CARDS.values())
TT_CONFIGS = [name for name, config in RUN_CONFIGS.items() if not config.torch_only]
SHAPE = BertShape(30522, HIDDEN, 1, HEADS, FFN, 512, 2, 1e-12, "gelu")


def arithmetic(config: str) -> tuple:
    """What decides an encoder layer's numbers besides the programs: each op's compute settings."""
    return tuple(get_run_config(config).compute(op) for op in ENCODER_OPS)


def dense_layer(flat, x, mask, config: str):
    """The encoder layer in dense torch with `config`'s arithmetic, computed as the emulator computes."""
    ops = TorchOps(SHAPE, get_run_config("FLOAT32"), arithmetic=get_run_config(config), dtype=EMULATION_DTYPE)
    with torch.inference_mode():
        return encoder_layer(ops, x, mask, ops.prepare(flat), SHAPE)


@pytest.fixture(scope="module")
def layer():
    """One BERT-large encoder layer, inputs for MAX_BATCH sequences of varied length, and the dense result per
    arithmetic (computed once for each)."""
    generator = torch.Generator().manual_seed(11)

    def normal(*size, scale=0.02):
        return torch.randn(*size, generator=generator) * scale

    flat = {
        "attention.self.qkv.weight": normal(HIDDEN, 3 * HIDDEN), "attention.self.qkv.bias": normal(3 * HIDDEN),
        "attention.output.dense.weight": normal(HIDDEN, HIDDEN), "attention.output.dense.bias": normal(HIDDEN),
        "attention.output.LayerNorm.weight": 1 + normal(HIDDEN), "attention.output.LayerNorm.bias": normal(HIDDEN),
        "intermediate.dense.weight": normal(HIDDEN, FFN), "intermediate.dense.bias": normal(FFN),
        "output.dense.weight": normal(FFN, HIDDEN), "output.dense.bias": normal(HIDDEN),
        "output.LayerNorm.weight": 1 + normal(HIDDEN), "output.LayerNorm.bias": normal(HIDDEN),
    }
    x = normal(MAX_BATCH, SEQ, HIDDEN, scale=1.0).to(EMULATION_DTYPE)
    lengths = torch.randint(40, SEQ + 1, (MAX_BATCH,), generator=generator)
    ops = TorchOps(SHAPE, get_run_config("FLOAT32"), dtype=EMULATION_DTYPE)
    mask = ops.attention_mask((torch.arange(SEQ)[None] < lengths[:, None]).float())
    dense = {}
    for config in TT_CONFIGS:
        if arithmetic(config) not in dense:
            dense[arithmetic(config)] = dense_layer(flat, x, mask, config)
    return flat, x, mask, dense


def emulate(plan, layer, rows):
    flat, x, mask, _ = layer
    backend = GridEmulator(plan, SHAPE, rows=rows)
    with torch.inference_mode():
        backend.begin_batch(plan.batch, SEQ)
        return encoder_layer(backend, x[: plan.batch], mask[: plan.batch], backend.prepare(flat), SHAPE)


def assert_matches_dense(out, layer, rows, config):
    dense = layer[3][arithmetic(config)]
    for row in rows:
        assert torch.allclose(out[row], dense[row], rtol=1e-4, atol=1e-4), f"sequence {row}: max error {(out[row] - dense[row]).abs().max()}"


@pytest.mark.parametrize("card, batch", [(name, batch) for name in sorted(CARDS) for batch in CARDS[name].batches()])
def test_every_supported_combination_equals_dense(card, batch, layer):
    done = set()
    for config in TT_CONFIGS:
        plan = make_plan(card, batch, config)
        key = (plan.orientation, plan.qkv_groups, tuple(op.program for op in plan.ops.values()), arithmetic(config))
        if key not in done:  # configs differing only in dtypes and placement run the same programs
            assert_matches_dense(emulate(plan, layer, [batch - 1]), layer, [batch - 1], config)
            done.add(key)
    assert done


def test_every_core_of_a_small_plan(layer):
    plan = make_plan("n150", 3, "BFLOAT8_B-SHARDED")
    assert_matches_dense(emulate(plan, layer, None), layer, range(3), "BFLOAT8_B-SHARDED")


def test_the_emulator_follows_the_configs_arithmetic(layer):
    """The dense reference the emulator matches is the card's arithmetic, not the exact one: skipping the
    cuts and approximations (FLOAT32's arithmetic) gives another layer."""
    flat, x, mask, dense = layer
    exact = dense_layer(flat, x[:1], mask[:1], "FLOAT32")
    assert not torch.allclose(exact[0], dense[arithmetic("BFLOAT8_B-SHARDED")][0], rtol=1e-2, atol=1e-2)


def _with_program(plan, op, **changes):
    spec = plan.ops[op]
    return replace(plan, ops={**plan.ops, op: replace(spec, program=replace(spec.program, **changes))})


def test_wrong_program_configs_fail(layer):
    plan = make_plan("n150", 2, "BFLOAT8_B-SHARDED")
    assert_matches_dense(emulate(plan, layer, [1]), layer, [1], "BFLOAT8_B-SHARDED")  # the unmodified plan passes
    # Numbers that cover the grid but compute the wrong thing: no fused GELU; a K block wider than Q.K^T's K,
    # which the hardware's K / in0_block_w block count turns into no K step at all.
    for wrong in (_with_program(plan, "ff1_gelu", fused_activation=None), _with_program(plan, "q_kt", in0_block_w=3)):
        with pytest.raises(AssertionError, match="max error"):
            assert_matches_dense(emulate(wrong, layer, [1]), layer, [1], "BFLOAT8_B-SHARDED")
    # Numbers that do not map onto the grid.
    with pytest.raises(EmulationError, match="straddles"):
        emulate(_with_program(plan, "qkv", in0_block_w=3), layer, [1])
    with pytest.raises(EmulationError, match="written"):
        emulate(_with_program(plan, "self_output", per_core_M=11), layer, [1])
    with pytest.raises(EmulationError, match="written"):
        emulate(_with_program(plan, "ff1_gelu", out_subblock_w=3), layer, [1])
    with pytest.raises(EmulationError):
        emulate(_with_program(plan, "qkv", transpose_mcast=True), layer, [1])
