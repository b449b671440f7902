"""The sharding plan: derived configs equal the seed's, invalid combinations are refused with a reason."""

from dataclasses import replace

import pytest

from bertl11.cards import CARDS
from bertl11.cli import main
from bertl11.config import TT_CONFIGS
from bertl11.plan import MULTICAST, REUSE, EncoderShape, PlanError, make_plan, out_subblock, problems

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
    "card, batch, config, reason",
    [
        ("e150", 13, "BFLOAT8_B-SHARDED", "compute grid is 12x9"),
        ("n300", 8, "BFLOAT8_B-SHARDED", "compute grid is 8x7"),
        ("e150", 1, "BFLOAT8_B-SHARDED", "runs batch 2-12"),
        ("n150", 8, "FLOAT32", "torch-only"),
    ],
)
def test_refusals_say_why(card, batch, config, reason):
    with pytest.raises(PlanError, match=reason):
        make_plan(card, batch, config)


def test_validation_catches_broken_configs():
    plan = make_plan("e150", 12)
    qkv = plan.ops["qkv"]
    wide = replace(plan, ops={**plan.ops, "qkv": replace(qkv, program=replace(qkv.program, out_subblock_h=2, out_subblock_w=6))})
    found = " ".join(problems(wide))
    assert "12 tiles exceeds the 8 destination registers" in found and "needs subblock height 1" in found
    odd = replace(plan, ops={**plan.ops, "qkv": replace(qkv, program=replace(qkv.program, in0_block_w=3))})
    assert "in0_block_w 3 does not divide" in " ".join(problems(odd))


def test_l1_overflow_is_refused():
    small = replace(CARDS["e150"], l1_bytes=300 * 1024)
    with pytest.raises(PlanError, match="KiB of L1 per core"):
        make_plan(small, 12, "BFLOAT8_B-SHARDED")


def test_cli_prints_the_table_and_refuses_with_exit_2(capsys):
    assert main(["plan", "--card", "e150", "--batch", "12", "--config", "BFLOAT8_B-SHARDED"]) == 0
    out = capsys.readouterr().out
    assert "per_core=12x12" in out and "grid 12x8" in out
    assert main(["plan", "--card", "e150", "--batch", "13"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertl11 plan: error:") and err.count("\n") == 1


def _with_program(plan, op, **changes):
    return replace(plan, ops={**plan.ops, op: replace(plan.ops[op], program=replace(plan.ops[op].program, **changes))})


# Each rule ttnn's device operations apply (plan.rules._op_problems), with a config that breaks it. Plans are the seed's
# BFLOAT8_B-SHARDED on an n150 at batch 8 (ROW_MAJOR) unless the rule needs another.
@pytest.mark.parametrize(
    "op, changes, reason",
    [
        ("qkv", {"per_core_M": 6}, "per_core_M 6 must equal the input shard height 12 tiles"),
        ("ff2", {"in0_block_w": 3}, "input shard width 16 tiles must be a multiple of in0_block_w 3"),
        ("self_output", {"transpose_mcast": True}, "transpose_mcast=True needs a COL_MAJOR"),
        ("q_kt", {"per_core_N": 6}, "per_core_N 6 must equal N = 12 tiles"),
        ("attention_v", {"per_core_M": 5}, "per_core_M 5 must divide, or be a multiple of, M = 12"),
        ("q_kt", {"in0_block_w": 1}, "shard width = K = in0_block_w"),
        ("softmax", {"block_w": 6}, "the shard width must be the whole key row"),
        ("softmax", {"block_h": 12}, "shards of 12x12 tiles must be one per core"),
        ("attention_add_layernorm", {"block_w": 8}, "block_w 8 must be 32 hidden tiles / 8 cores"),
        ("ffn_add_layernorm", {"block_h": 6}, "block_h 6 must be 96 row tiles / 8 cores"),
    ],
)
def test_each_ported_ttnn_rule_refuses_a_config_that_breaks_it(op, changes, reason):
    plan = make_plan("n150", 8, "BFLOAT8_B-SHARDED")
    assert not problems(plan)
    found = problems(_with_program(plan, op, **changes))
    assert any(reason in p for p in found), found
    assert all(".cpp" in p for p in found if reason in p)  # each names the tt-metal source it was ported from


def test_softmax_mask_shape_rules():
    plan = make_plan("n150", 8, "BFLOAT8_B-SHARDED")
    assert plan.mask_shape == (8, 1, 12, 32)
    assert any("mask's batch 4 must equal" in p for p in problems(replace(plan, mask_shape=(4, 1, 12, 32))))
    assert any("row-major mask must be [B, 1, S/32, 32]" in p for p in problems(replace(plan, mask_shape=(8, 1, 1, 384))))
    assert make_plan("n150", 8, "BFLOAT8_B-L1").mask_shape == (8, 1, 1, 384)  # the default program broadcasts a tiled row


def test_sharded_split_needs_two_heads_per_core():
    tiny = EncoderShape(seq=384, hidden=128, heads=2, intermediate=512)
    with pytest.raises(PlanError, match="moves 2 heads per core; 2 heads over 2 groups put 1 on each"):
        make_plan("n150", 8, "BFLOAT8_B-SHARDED", tiny)
    assert make_plan("n150", 8, "BFLOAT8_B-L1", tiny).groups  # interleaved configs do not use that program


def test_every_declared_plan_passes_the_ported_rules():
    for card in CARDS.values():
        for batch in card.batches():
            for config in TT_CONFIGS:
                make_plan(card, batch, config)
