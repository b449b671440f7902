"""`bertl11 profile`: one row per executed op, the seed's op names, FLOPs from the textbook formula."""

import csv

import pytest

from bertl11 import resolve_model
from bertl11.cli import main
from bertl11.profile import model_flops

COLUMNS = ("Layer", "Op", "Op Name", "Input Shapes", "Output Shapes", "Dtype", "Duration (ms)", "FLOPs", "GFLOP/s", "Share (%)")
# The seed encoder's ops in order, as its report names them (docs/sources.md section 1), numbered.
SEED_ENCODER = ["QKV", "split heads", "QK^T", "softmax", "attention.V", "concat heads", "self-output",
                "add+layernorm", "FF1+GELU", "FF2", "add+layernorm"]
BATCH, SEQ = 2, 64


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    code = main(["profile", "--model", "tiny", "--config", "BFLOAT16-DRAM", "--batch", str(BATCH), "--seq", str(SEQ),
                 "--iterations", "1", "--csv", str(out / "ops.csv"), "--plot", str(out / "ops.png")])
    assert code == 0
    return list(csv.DictReader((out / "ops.csv").open())), out / "ops.png"


def test_one_row_per_executed_op(profiled):
    rows, _ = profiled
    layers = resolve_model("tiny").shape.num_layers
    assert set(COLUMNS) <= set(rows[0])
    assert len(rows) == layers * 11 + 2
    expected = ["embeddings"] + [f"({i + 1}) {name}" for _ in range(layers) for i, name in enumerate(SEED_ENCODER)] + ["QA head"]
    assert [r["Op Name"] for r in rows] == expected
    assert [r["Layer"] for r in rows[1:-1]] == [str(i) for i in range(layers) for _ in range(11)]
    assert all(float(r["Duration (ms)"]) > 0 for r in rows)
    assert sum(float(r["Share (%)"]) for r in rows) == pytest.approx(100, abs=0.05)
    assert rows[0]["Input Shapes"] == f"{BATCH}x{SEQ} {BATCH}x{SEQ}"


def test_flops_follow_the_bert_formula(profiled):
    """Per layer and sequence: 24*s*d^2 (the four linears, FFN = 4d) + 4*s^2*d (Q.K^T and .V)."""
    rows, _ = profiled
    shape = resolve_model("tiny").shape
    d, s = shape.hidden_size, SEQ
    assert shape.intermediate_size == 4 * d, "the formula assumes FFN = 4d"
    for layer in range(shape.num_layers):
        layer_rows = [r for r in rows if r["Layer"] == str(layer)]
        assert sum(int(r["FLOPs"]) for r in layer_rows) == BATCH * (24 * s * d * d + 4 * s * s * d)
    by_name = {r["Op Name"]: int(r["FLOPs"]) for r in rows if r["Layer"] == "0"}
    assert by_name["(3) QK^T"] == by_name["(5) attention.V"] == BATCH * 2 * s * s * d
    assert by_name["(4) softmax"] == 0
    assert int(rows[-1]["FLOPs"]) == BATCH * 2 * s * d * 2  # QA head: d -> start, end


def test_model_flops_is_the_sum_of_the_profiled_ops(profiled):
    """`profile.model_flops` (what `bertl11 perf` reports utilisation from) counts what the profile counts op by op."""
    rows, _ = profiled
    assert model_flops(resolve_model("tiny").shape, BATCH, SEQ) == sum(int(r["FLOPs"]) for r in rows)


def test_plot_is_a_png(profiled):
    _, plot = profiled
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_requires_a_csv(capsys):
    assert main(["profile", "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "--csv" in err and len(err.strip().splitlines()) == 1, err
