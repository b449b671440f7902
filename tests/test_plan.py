"""The sharding plan: derived configs equal the seed's, invalid combinations are refused with a reason."""

import json
from dataclasses import replace

import pytest

from bertl11.cards import CARDS
from bertl11.cli import main
from bertl11.config import TT_CONFIGS
from bertl11.ops import ENCODER_OPS, OPS
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
        ("n300", 9, "BFLOAT8_B-SHARDED", "compute grid is 8x8"),
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


def minilm_shape() -> EncoderShape:
    """MiniLM's encoder (12 heads of 32, hidden 384): its head size puts one tile column per head on attention.V."""
    from bertl11.sources import model_shape

    return EncoderShape.from_bert(model_shape("minilm"))


def test_batched_matmul_subblock_divides_the_rows_of_one_matrix():
    """ttnn's Reuse program for a batched matmul (batch on both operands) requires out_subblock_h to divide M, the
    rows of one matrix of the batch in tiles (S/32), not only per_core_M (matmul_device_operation.cpp). MiniLM's
    attention.V block is 24x1 tiles (2 heads x 12 rows): 8x1 divides the block but not M = 12."""
    shape = minilm_shape()
    plan = make_plan("n150", 8, "BFLOAT8_B-L1", shape)
    rows_of_one_matrix = shape.seq // 32
    for op in ("q_kt", "attention_v"):
        program = plan.ops[op].program
        assert rows_of_one_matrix % program.out_subblock_h == 0 and program.per_core_M % program.out_subblock_h == 0
    old = _with_program(plan, "attention_v", out_subblock_h=8)
    refused = [p for p in problems(old) if p.startswith("attention_v")]
    assert refused == [f"attention_v: out_subblock_h (8) needs to divide M ({rows_of_one_matrix}) evenly, the rows of one "
                       "matrix of the batch in tiles (matmul/device/matmul_device_operation.cpp)"]


# Bytes per tile (tt_metal tile_size) and the factory's double buffering (MCAST_INPUT_BUFFERING_DEPTH).
BFP8_TILE, BF16_TILE, DOUBLE = 1088, 2048, 2


def test_l1_counts_the_matmul_intermediate_buffer():
    """The 2D multicast factory (matmul_multicore_reuse_mcast_2d_program_factory.cpp) accumulates in L1
    (packer_l1_acc, ttnn's default unless the output is float32) when there is a bias and more than one K block;
    the partials are Float16_b, so beside a BFLOAT8_B output it allocates an intermediate buffer of per_core_M x
    per_core_N tiles of its own. The QKV of BFLOAT8_B-SHARDED on an n150, batch 8, buffer by buffer:"""
    plan = make_plan("n150", 8, "BFLOAT8_B-SHARDED")
    qkv = plan.ops["qkv"].program
    shard_k = 1024 // 32 // plan.groups  # the hidden tiles a core holds of its sequence
    assert (1024 // 32) // qkv.in0_block_w > 1  # K blocks: the partials accumulate in L1
    expected = {
        "layer input shard": 12 * shard_k * BFP8_TILE,
        "output shard": qkv.per_core_M * qkv.per_core_N * BFP8_TILE,
        "in0 (multicast receive)": qkv.per_core_M * qkv.in0_block_w * DOUBLE * BFP8_TILE,
        "in1 (weights)": qkv.per_core_N * qkv.in0_block_w * DOUBLE * BFP8_TILE,
        "bias": qkv.per_core_N * BFP8_TILE,
        "intermediate (Float16_b)": qkv.per_core_M * qkv.per_core_N * BF16_TILE,
    }
    assert plan.ops["qkv"].l1_bytes == sum(expected.values())
    # A bfloat16 output shares its buffer with the partials: no intermediate buffer of its own.
    bf16 = make_plan("n150", 8, "BFLOAT16-L1")
    ff2 = bf16.ops["ff2"]
    assert ff2.output.dtype == "bfloat16" and ff2.l1_bytes <= bf16.card.l1_free_bytes


def test_sharded_layernorm_needs_the_residual_in_the_inputs_memory_config():
    """layernorm_device_operation.cpp: with a sharded input, the residual must be sharded with the same shard spec
    and memory config. The plan places both from one rule; a placement that differs is refused in one line."""
    plan = make_plan("n150", 8, "BFLOAT8_B-SHARDED")
    for op, residual in (("attention_add_layernorm", "self_output"), ("ffn_add_layernorm", "ff2")):
        narrower = replace(plan.ops[residual].output, shard_shape=(384, 64))
        moved = replace(plan, ops={**plan.ops, residual: replace(plan.ops[residual], output=narrower)})
        found = [p for p in problems(moved) if p.startswith(op)]
        assert len(found) == 1 and "the same memory config" in found[0] and "layernorm_device_operation.cpp" in found[0], found


def plan_json(capsys, *arguments) -> dict:
    assert main(["plan", *arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_plans_any_bert_as_json(capsys):
    """`bertl11 plan --model minilm --json`: MiniLM's plan, each op under its name in ops.OPS with its program config
    under ttnn's names; attention.V's subblock divides the rows of one matrix (the D1 rule)."""
    data = plan_json(capsys, "--model", "minilm", "--card", "n150", "--batch", "8", "--config", "BFLOAT8_B-L1")
    assert data["shape"] == {"seq": 384, "hidden": 384, "heads": 12, "intermediate": 1536}
    ops = {op["op"]: op for op in data["ops"]}
    assert list(ops) == list(ENCODER_OPS) and set(ops) <= set(OPS)
    attention_v = ops["attention_v"]["program_config"]
    assert attention_v["class"] == "MatmulMultiCoreReuseProgramConfig"
    assert (data["shape"]["seq"] // 32) % attention_v["out_subblock_h"] == 0
    assert attention_v["per_core_M"] % attention_v["out_subblock_h"] == 0
    # Grids are [rows, columns]; ttnn's CoreCoord is (x = column, y = row).
    x, y = ops["qkv"]["program_config"]["compute_with_storage_grid_size"]["CoreCoord"]
    assert data["grid"] == [y, x] == [8, 6] and data["card_grid"] == [8, 8]
    assert data["untested_on_a_card"].startswith("untested on a card")


def test_cli_json_grid_is_rows_then_columns(capsys):
    data = plan_json(capsys, "--card", "e150", "--batch", "12")  # batch along x: 12 columns of 8 hidden groups
    assert data["grid"] == [8, 12] and data["card_grid"] == [9, 12] and data["untested_on_a_card"] is None
    qkv = next(op for op in data["ops"] if op["op"] == "qkv")["program_config"]
    assert {"per_core_M", "per_core_N", "in0_block_w", "out_subblock_h", "out_subblock_w", "transpose_mcast"} <= set(qkv)
    assert qkv["compute_with_storage_grid_size"] == {"CoreCoord": [12, 8]}


def test_cli_plan_reads_only_the_models_config(tmp_path, capsys):
    """A directory with a BERT config.json and no weights is enough for a plan."""
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
        "intermediate_size": 2048, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"}))
    data = plan_json(capsys, "--model", str(tmp_path), "--card", "n150", "--batch", "8", "--config", "BFLOAT8_B-SHARDED")
    assert data["shape"]["hidden"] == 512 and data["hidden_groups"] == 8


def test_cli_n300_batch_8_gets_the_8x8_grid(capsys):
    assert main(["plan", "--card", "n300", "--batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "grid 8x8 of 8x8" in out and "untested on a card" not in out
    assert main(["plan", "--card", "n300", "--batch", "8", "--config", "BFLOAT8_B-L1"]) == 0
    assert "untested on a card: the seed ran Wormhole with BFLOAT8_B-SHARDED at batch 2-8 only" in capsys.readouterr().out


def test_plan_shows_the_estimated_device_time_of_each_op(capsys):
    """`bertl11 plan` carries `bertl11 estimate`'s per-op prediction beside each program config."""
    from bertl11.estimate import predict_op

    data = plan_json(capsys, "--card", "e150", "--batch", "12")
    plan = make_plan("e150", 12, "BFLOAT8_B-SHARDED")
    for op in data["ops"]:
        cost = predict_op(plan, op["op"])
        assert op["predicted_device_ns"] == round(cost.ns, 1) and op["bound"] == cost.bound
    assert main(["plan", "--card", "e150", "--batch", "12"]) == 0
    text = capsys.readouterr().out
    assert "predicted (bound)" in text and f"{predict_op(plan, 'ff1_gelu').ns / 1e3:.1f} us" in text
