"""`bertl11 estimate`: the cost model against tt-metal's published figures (every anchor within its group's bound),
the matmul form on any tiled shape, card, dtype and fidelity, and the command's outputs."""

import importlib.util
import json
import math
from dataclasses import replace

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertl11.anchors import BOUNDS, GEMM_ANCHORS, MODEL_ANCHORS, SEED, anchor_table, evaluate
from bertl11.cards import CARDS
from bertl11.cli import main
from bertl11.config import BFLOAT8_B, BFLOAT16, TT_CONFIGS
from bertl11.errors import UserError
from bertl11.estimate import (
    BOUNDS as COST_BOUNDS, FIDELITY_PHASES, TENSIX, estimate_matmul, estimate_model, predict_op, report_rows,
)
from bertl11.ops import ENCODER_OPS
from bertl11.plan import PlanError, make_plan
from bertl11.tt_profile import KERNEL_NS, OP_CODE
from conftest import REPO

DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def results():
    return evaluate()


def test_every_anchor_is_within_its_groups_bound(results):
    assert len(results) == len(MODEL_ANCHORS) + len(GEMM_ANCHORS)
    too_far = [f"{r.name} ({r.kind}): {100 * r.error:+.1f}% > {100 * r.bound:.0f}%" for r in results if abs(r.error) > r.bound]
    assert not too_far, "; ".join(too_far)
    assert {r.group for r in results} == set(BOUNDS)


def test_the_seeds_device_figures_are_within_15_percent(results):
    seed = {(r.name, r.kind): r for r in results if r.group == SEED}
    assert len(seed) == 3  # Grayskull batch 12 (400), Wormhole batch 8 (340) and batch 7 (280)
    assert all(abs(r.error) <= 0.15 for r in seed.values())


def test_fitted_and_held_out_gemm_rows_are_both_there():
    fitted = [a for a in GEMM_ANCHORS if a.fitted]
    held_out = [a for a in GEMM_ANCHORS if not a.fitted]
    assert len(fitted) == len(held_out) == 42
    assert {a.fidelity for a in held_out} == {"HiFi2"} and {a.fidelity for a in fitted} == {"LoFi", "HiFi4"}


def test_docs_hold_the_current_anchor_table(results):
    """docs/performance.md shows `bertl11 estimate --anchors` as it prints now."""
    text = (DOCS / "performance.md").read_text()
    missing = [line for line in anchor_table(results).splitlines() if line and line not in text]
    assert not missing, f"docs/performance.md is out of date, e.g. {missing[0]}"


TILED = st.integers(1, 160).map(lambda t: 32 * t)


@settings(max_examples=25, deadline=None)
@given(m=TILED, k=TILED, n=TILED, card=st.sampled_from(sorted(CARDS)), dtype=st.sampled_from([BFLOAT8_B, BFLOAT16]))
def test_the_matmul_form_answers_any_tiled_shape_monotone_in_fidelity(m, k, n, card, dtype):
    times = [estimate_matmul(card, m, k, n, dtype, f) for f in FIDELITY_PHASES]
    for e in times:
        assert e.device_us > 0 and 0 < e.utilisation <= 1
        assert e.cycles.bound in COST_BOUNDS
    assert all(a.device_us <= b.device_us for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("card", sorted(CARDS))
def test_fidelity_costs_on_a_compute_bound_matmul(card):
    """At HiFi4 a large matmul is bound by the matrix engine (four passes per product) and runs close to its peak,
    as the GEMM tables show (92-94%); at LoFi it is faster, bound by the engine or by unpacking from L1."""
    lofi, hifi4 = (estimate_matmul(card, 4096, 4096, 4096, BFLOAT16, f) for f in ("LoFi", "HiFi4"))
    assert hifi4.cycles.bound == "compute" and hifi4.utilisation > 0.8
    assert lofi.device_us < hifi4.device_us and lofi.cycles.bound in ("compute", "L1")


def test_matmul_refusals():
    with pytest.raises(UserError, match="not a positive multiple of the 32-wide tile"):
        estimate_matmul("n150", 100, 64, 64, BFLOAT16)
    with pytest.raises(UserError, match="choose BFLOAT8_B or BFLOAT16"):
        estimate_matmul("n150", 64, 64, 64, "float32")
    with pytest.raises(UserError, match="math fidelity 'HiFi5': choose one of LoFi, HiFi2, HiFi3, HiFi4"):
        estimate_matmul("n150", 64, 64, 64, BFLOAT16, "HiFi5")


def test_no_op_beats_the_matrix_engine_or_has_no_bound():
    """Every op of every declared card, batch and config: positive time, a bound, and at most the engine's ideal."""
    for card in CARDS.values():
        for batch in (card.batch_range[0], card.batch_range[1]):
            for config in TT_CONFIGS:
                try:
                    plan = make_plan(card, batch, config)
                except PlanError:
                    continue
                for name in ENCODER_OPS:
                    op = predict_op(plan, name)
                    assert op.ns > 0 and op.bound in COST_BOUNDS and 0 <= op.utilisation <= 1, (card.name, batch, config, name)


@pytest.mark.parametrize("arch", ["wormhole_b0", "blackhole"])
def test_the_fitted_constants_are_the_fits_optimum(arch):
    """`estimate.TENSIX` holds a least-squares optimum of benchmarks/fit_estimate.py's problem, as the docs say:
    refitting from the stored constants does not improve them beyond their rounding, and the fit from the script's
    own start (whose minimum depends on the CPU's floating-point path) finds nothing better."""
    pytest.importorskip("scipy")
    spec = importlib.util.spec_from_file_location("fit_estimate", REPO / "benchmarks" / "fit_estimate.py")
    fit_estimate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_estimate)
    stored = {name: getattr(TENSIX[arch], name) for name in fit_estimate.FITTED}
    fitted_rows = [a for a in GEMM_ANCHORS if CARDS[a.card].arch == arch and a.fitted]

    def cost(values):
        errors = fit_estimate.relative_errors(replace(TENSIX[arch], **values), fitted_rows)
        return float((errors ** 2).sum())

    refitted, _ = fit_estimate.fit(arch, start=tuple(stored.values()))
    for name, value in refitted.items():
        assert stored[name] == pytest.approx(value, rel=0.01, abs=0.5), name
    from_start, _ = fit_estimate.fit(arch)
    assert cost(stored) <= cost(from_start) * 1.01


def test_pm_columns_follow_tt_metals_formula():
    """QKV on an n150 at batch 8: 2 x 3072 x 1024 x 3072 flops over 64 cores x 4096 per cycle at 1 GHz = 73,728 ns."""
    rows = report_rows(estimate_model("n150", 8, "BFLOAT8_B-SHARDED"))
    qkv = next(r for r in rows if r["BERTL11 OP"] == "(1) QKV")
    assert qkv["PM COMPUTE [ns]"] == 73728 and qkv["MATH FIDELITY"] == "LoFi"
    softmax = next(r for r in rows if r["OP CODE"] == "Softmax")
    assert softmax["PM COMPUTE [ns]"] == 1  # no model in tt-metal: one cycle


def test_cli_matmul_json(capsys):
    assert main(["estimate", "--card", "n150", "--matmul", "1024x1024x1024", "--dtype", "BFLOAT8_B",
                 "--math-fidelity", "HiFi2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device_us"] > 0 and 0 < out["utilisation"] <= 1 and out["grid"] == [8, 8]


def test_cli_model_json_and_csv(tmp_path, capsys):
    csv = tmp_path / "estimate.csv"
    assert main(["estimate", "--card", "e150", "--batch", "12", "--csv", str(csv), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples_per_s"] == pytest.approx(12 / (out["device_ms"] / 1e3), rel=1e-3)
    assert out["untraced_samples_per_s"] < out["traced_samples_per_s"] < out["samples_per_s"]
    written = pd.read_csv(csv)
    assert len(written) == out["device_ops"] == 6 + 24 * 11 + 2
    for column in (OP_CODE, KERNEL_NS, "PM IDEAL [ns]", "CORE COUNT", "MATH FIDELITY", "INPUT_0_DATATYPE"):
        assert column in written.columns
    assert written[KERNEL_NS].sum() / 1e6 == pytest.approx(out["device_ms"], rel=1e-3)


def test_cli_prints_the_model_and_refuses_in_one_line(capsys):
    assert main(["estimate", "--card", "n150", "--batch", "8", "--math-fidelity", "HiFi4"]) == 0
    out = capsys.readouterr().out
    assert "Wormhole n150, batch 8" in out and "(1) QKV" in out and "samples/s" in out
    assert main(["estimate", "--card", "e150", "--batch", "13"]) == 2
    assert "compute grid is 12x9" in capsys.readouterr().err
    assert main(["estimate", "--matmul", "100x64x64"]) == 2
    assert main(["estimate", "--matmul", "64x64", "--json"]) == 2
    assert main(["estimate", "--matmul", "64x64x64", "--csv", "x.csv"]) == 2


def test_fidelity_and_the_8x8_grid():
    """The seed's Wormhole tables ran an n300 with ethernet dispatch: 8x8 like the n150 entry, same estimate."""
    from dataclasses import replace

    n300_8x8 = replace(CARDS["n300"], grid=(8, 8), batch_range=(2, 8))
    n150 = estimate_model("n150", 8, "BFLOAT8_B-SHARDED")
    assert estimate_model(n300_8x8, 8, "BFLOAT8_B-SHARDED").device_ns == pytest.approx(n150.device_ns, rel=1e-6)
    hifi4 = estimate_model("n150", 8, "BFLOAT8_B-SHARDED", fidelity="HiFi4")
    assert hifi4.device_ns > n150.device_ns
    assert math.isclose(hifi4.by_op()["softmax"], n150.by_op()["softmax"])  # not a matmul


def test_cli_puts_a_cards_report_beside_the_estimate(tmp_path, capsys):
    """A made-up measured report: the estimate's own ops at 1.25x its durations, under newer tt-metal names, with host
    rows (no device duration) and one extra device op per layer; every predicted op pairs, at -20%."""
    predicted = pd.DataFrame(report_rows(estimate_model("n150", 8, "BFLOAT8_B-SHARDED")))
    rows = []
    for _, row in predicted.iterrows():
        newer = row[OP_CODE] if row[OP_CODE].endswith("DeviceOperation") else f"{row[OP_CODE]}DeviceOperation"
        rows.append({OP_CODE: newer, KERNEL_NS: 1.25 * row[KERNEL_NS]})
        if row[OP_CODE] == "Softmax":
            rows += [{OP_CODE: "ReshapeViewDeviceOperation", KERNEL_NS: 1000.0}, {OP_CODE: "Tensor.to", KERNEL_NS: ""}]
    report = tmp_path / "ops_perf_results.csv"
    pd.DataFrame(rows).to_csv(report, index=False)
    assert main(["estimate", "--card", "n150", "--batch", "8", "--against", str(report), "--json"]) == 0
    against = json.loads(capsys.readouterr().out)["against"]
    assert against["paired_ops"] == len(predicted) and against["unpaired"] == {"measured": 24, "predicted": 0}
    assert all(r["error_%"] == pytest.approx(-20, abs=0.2) for r in against["by_op"])  # durations rounded to 1 ns
    assert main(["estimate", "--card", "n150", "--batch", "8", "--against", str(report)]) == 0
    assert "device samples/s: measured" in capsys.readouterr().out
    unrelated = tmp_path / "other.csv"
    pd.DataFrame([{OP_CODE: "Conv2d", KERNEL_NS: 5.0}]).to_csv(unrelated, index=False)
    assert main(["estimate", "--card", "n150", "--batch", "8", "--against", str(unrelated)]) == 2


def test_model_reads_only_a_config(tmp_path, capsys):
    """--model takes a directory holding nothing but a BERT config.json (no weights, no tokenizer)."""
    from bertl11.anchors import BERT_BASE

    config = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
              "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
              "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["estimate", "--card", "n150", "--batch", "8", "--model", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == 12 and out["device_ops"] == 6 + 12 * 11 + 2
    assert out["samples_per_s"] == round(estimate_model("n150", 8, "BFLOAT8_B-SHARDED", BERT_BASE, 12).samples_per_s, 1)
