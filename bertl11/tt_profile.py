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
