"""Reading the Tenstorrent device profiler's op report (where a card exists).

`profile_this.py -c "pytest ...test_bert.py::test_bert[...]"` (tt-metal, built with the profiler) writes
`generated/profiler/reports/<name>/ops_perf_results_<date>.csv`: one row per op executed on the device.
Column names are tt-metal's (tools/tracy/process_ops_logs.py, OPS_CSV_HEADER); the ones used here:
OP CODE, CORE COUNT, MATH FIDELITY, DEVICE KERNEL DURATION [ns].
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

OP_CODE = "OP CODE"
KERNEL_NS = "DEVICE KERNEL DURATION [ns]"
CORES = "CORE COUNT"
FIDELITY = "MATH FIDELITY"


def read_ops_report(path: str | Path):
    """The report as a pandas DataFrame of device ops (host-only rows, which have no kernel duration, dropped)."""
    import pandas as pd

    try:
        report = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the device profile {path}: {error}") from None
    missing = [c for c in (OP_CODE, KERNEL_NS) if c not in report.columns]
    if missing:
        raise UserError(f"{path} is not a tt-metal ops report: no column {', '.join(map(repr, missing))}")
    return report[pd.to_numeric(report[KERNEL_NS], errors="coerce").notna()].astype({KERNEL_NS: float})


def summarize_ops(report):
    """Per OP CODE: calls, total and mean kernel time (us), share of the total, cores and fidelity used."""
    grouped = report.groupby(OP_CODE, sort=False)
    summary = grouped[KERNEL_NS].agg(calls="count", total_us="sum", mean_us="mean")
    summary[["total_us", "mean_us"]] /= 1e3
    summary["share_%"] = 100 * summary["total_us"] / summary["total_us"].sum()
    for column in (CORES, FIDELITY):
        if column in report.columns:
            summary[column.lower()] = grouped[column].agg(lambda values: ", ".join(sorted({_label(v) for v in values})))
    return summary.sort_values("total_us", ascending=False).round(2)


def _label(value) -> str:
    """96.0 -> "96": a column with empty host rows is read as float."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def device_throughput(report, batch: int, runs: int = 1) -> float:
    """Samples/s on the device alone, as the seed's device perf counts them: batch / kernel time per run."""
    seconds = report[KERNEL_NS].sum() / 1e9 / runs
    if seconds <= 0:
        raise UserError("the device profile holds no kernel time")
    return batch / seconds


def op_kind(op_code: str) -> str:
    """An OP CODE without what tt-metal versions add or drop around the same operation ("MatmulDeviceOperation",
    "Matmul" -> "matmul"; "NLPConcatHeadsDeviceOperation", "NlpConcatHeads" -> "nlpconcatheads")."""
    name = "".join(ch for ch in str(op_code).lower() if ch.isalnum())
    for suffix in ("deviceoperation", "operation"):
        name = name.removesuffix(suffix)
    return OP_KIND_ALIASES.get(name, name)


# Names of the same device operation in different tt-metal versions.
OP_KIND_ALIASES = {"eltwisebinary": "binary", "binaryng": "binary", "splitfusedqkvandsplitheads": "splitheads",
                   "splitquerykeyvalueandsplitheads": "splitheads", "nlpcreateqkvheads": "splitheads",
                   "layernormpostallgather": "layernorm", "softmaxinplace": "softmax"}


def compare_reports(measured, predicted):
    """A card's measured ops report beside a predicted one (`bertl11 estimate --csv`, same columns), op by op.

    The two lists of OP CODEs are aligned in order (difflib: an op only one side has is left unpaired, so a report
    with extra host-side or conversion ops still lines up); each pair gets both kernel durations and the error of the
    prediction. Returns (pairs, unmatched): a DataFrame per paired op (measured row order) and the count of ops left
    unpaired on each side."""
    import difflib

    import pandas as pd

    kinds_measured = [op_kind(c) for c in measured[OP_CODE]]
    kinds_predicted = [op_kind(c) for c in predicted[OP_CODE]]
    matcher = difflib.SequenceMatcher(a=kinds_measured, b=kinds_predicted, autojunk=False)
    pairs = []
    for block in matcher.get_matching_blocks():
        for i in range(block.size):
            m, p = measured.iloc[block.a + i], predicted.iloc[block.b + i]
            pairs.append({OP_CODE: m[OP_CODE], "op": p.get("BERTL11 OP", p[OP_CODE]), "measured_us": m[KERNEL_NS] / 1e3,
                          "predicted_us": float(p[KERNEL_NS]) / 1e3})
    table = pd.DataFrame(pairs, columns=[OP_CODE, "op", "measured_us", "predicted_us"])
    table["error_%"] = 100 * (table["predicted_us"] / table["measured_us"] - 1)
    paired = len(table)
    return table.round(2), {"measured": len(measured) - paired, "predicted": len(predicted) - paired}


def error_by_op(pairs):
    """Per op (summed over layers): measured and predicted microseconds and the error of the prediction."""
    grouped = pairs.groupby("op", sort=False)[["measured_us", "predicted_us"]].sum()
    grouped["error_%"] = 100 * (grouped["predicted_us"] / grouped["measured_us"] - 1)
    return grouped.round(1)
