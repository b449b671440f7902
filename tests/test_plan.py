"""The sharding plan: derived configs equal the seed's, invalid combinations are refused with a reason."""

from dataclasses import replace

import pytest

from bertl11.cli import main
from bertl11.devices import DEVICES
from bertl11.plan import MULTICAST, REUSE, PlanError, make_plan, out_subblock, problems

# The seed's tt/model_config.py, BFLOAT8_B-SHARDED at batch 12 (docs/sources.md section 1):
# op -> (program kind, in0_block_w, out_subblock_h, out_subblock_w, per_core_M, per_core_N)
SEED_MATMULS = {
    "qkv": (MULTICAST, 4, 1, 6, 12, 12),
    "q_kt": (REUSE, 2, 1, 6, 24, 12),
    "attention_v": (REUSE, 12, 4, 2, 24, 2),
    "self_output": (MULTICAST, 4, 2, 4, 12, 4),
    "ff1_gelu": (MULTICAST, 4, 1, 8, 12, 16),
    "ff2": (MULTICAST, 16, 2, 4, 12, 4),
}


def _matmul_numbers(plan):
    return {
        name: (p.kind, p.in0_block_w, p.out_subblock_h, p.out_subblock_w, p.per_core_M, p.per_core_N)
        for name, p in ((n, plan.ops[n].program) for n in SEED_MATMULS)
    }


def test_grayskull_batch_12_reproduces_the_seed():
    plan = make_plan("e150", 12, "BFLOAT8_B-SHARDED")
    assert plan.grid == (12, 8) and plan.orientation == "COL_MAJOR" and plan.qkv_groups == 8
    assert _matmul_numbers(plan) == SEED_MATMULS
    assert all(plan.ops[n].program.transpose_mcast for n in ("qkv", "self_output", "ff1_gelu", "ff2"))
    assert plan.ops["ff1_gelu"].program.fused_activation == "gelu"
    softmax = plan.ops["softmax"].program
    assert (softmax.subblock_w, softmax.block_h, softmax.block_w) == (6, 24, 12)
    for name in ("attention_add_layernorm", "ffn_add_layernorm"):
        norm = plan.ops[name].program
        assert (norm.subblock_w, norm.block_h, norm.block_w, norm.inplace) == (4, 12, 4, True)
    # The seed's SHARD_SIZE [384, 128] for the block-sharded activations.
    assert plan.ops["self_output"].output.shard_shape == (384, 128)


def test_wormhole_uses_the_row_major_grid_with_the_same_blocks():
    plan = make_plan("n150", 8, "BFLOAT8_B-SHARDED")
    assert plan.grid == (8, 8) and plan.orientation == "ROW_MAJOR"
    assert _matmul_numbers(plan) == SEED_MATMULS
    assert not plan.ops["qkv"].program.transpose_mcast


def test_subblock_rule():
    assert out_subblock(12, 12, 8) == (1, 6)  # w < per_core_N forces h = 1
    assert out_subblock(24, 2, 8) == (4, 2)
    assert out_subblock(12, 4, 4) == (1, 4)  # fp32 accumulation halves the registers


@pytest.mark.parametrize(
    "device, batch, config, reason",
    [
        ("e150", 13, "BFLOAT8_B-SHARDED", "compute grid is 12x9"),
        ("n300", 8, "BFLOAT8_B-SHARDED", "compute grid is 8x7"),
        ("e150", 1, "BFLOAT8_B-SHARDED", "runs batch 2-12"),
        ("n150", 8, "FLOAT32", "torch-only"),
    ],
)
def test_refusals_say_why(device, batch, config, reason):
    with pytest.raises(PlanError, match=reason):
        make_plan(device, batch, config)


def test_validation_catches_broken_configs():
    plan = make_plan("e150", 12)
    qkv = plan.ops["qkv"]
    wide = replace(plan, ops={**plan.ops, "qkv": replace(qkv, program=replace(qkv.program, out_subblock_h=2, out_subblock_w=6))})
    found = " ".join(problems(wide))
    assert "12 tiles exceeds the 8 destination registers" in found and "needs subblock height 1" in found
    odd = replace(plan, ops={**plan.ops, "qkv": replace(qkv, program=replace(qkv.program, in0_block_w=3))})
    assert "in0_block_w 3 does not divide" in " ".join(problems(odd))


def test_l1_overflow_is_refused():
    small = replace(DEVICES["e150"], l1_bytes=300 * 1024)
    with pytest.raises(PlanError, match="KiB of L1 per core"):
        make_plan(small, 12, "BFLOAT8_B-SHARDED")


def test_cli_prints_the_table_and_refuses_with_exit_2(capsys):
    assert main(["plan", "--card", "e150", "--batch", "12", "--config", "BFLOAT8_B-SHARDED"]) == 0
    out = capsys.readouterr().out
    assert "per_core=12x12" in out and "grid 12x8" in out
    assert main(["plan", "--card", "e150", "--batch", "13"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertl11 plan: error:") and err.count("\n") == 1
