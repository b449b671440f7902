"""Fit the estimate's matmul constants to tt-metal's published GEMM benchmark rows (`bertl11.anchors`).

    python benchmarks/fit_estimate.py          # needs scipy

For Wormhole and Blackhole, six constants of `bertl11.estimate.Tensix` (the math thread's cost per inner step, the
hand-off per subblock, the unpackers' bytes per cycle, a fetched K block's bytes per cycle and latency, the start-up
cycles) are fitted by least squares on the relative error of the predicted cycles, on the rows marked `fitted`
(BFLOAT8_B at LoFi and BFLOAT16 at HiFi4 of each card); the held-out HiFi2 rows then test them. The unpackers are
held at or below 80 bytes per cycle, the published joint peak of the two. Prints the constants (to copy into
`estimate.TENSIX`) and the error of every row. Nothing else of the model is fitted here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from bertl11.anchors import GEMM_ANCHORS
from bertl11.cards import CARDS
from bertl11.estimate import FETCHED, MULTICAST_SHARD, TENSIX, Operand, matmul_cycles
from bertl11.plan import TILE

FITTED = ("step_cycles", "subblock_cycles", "unpack_bytes", "fetch_bytes", "fetch_latency", "start_cycles")
START = (20.0, 30.0, 50.0, 15.0, 300.0, 3000.0)
LOWER = (0.0, 0.0, 10.0, 1.0, 0.0, 0.0)
UPPER = (500.0, 2000.0, 80.0, 200.0, 20000.0, 20000.0)


def relative_errors(tensix, anchors) -> np.ndarray:
    """Predicted / measured matmul cycles - 1 for each anchor."""
    errors = []
    for anchor in anchors:
        prog = anchor.program()
        cycles = matmul_cycles(tensix, prog, anchor.k // TILE, Operand(anchor.dtype, MULTICAST_SHARD),
                               Operand(anchor.dtype, FETCHED, dram=True), anchor.dtype, anchor.fidelity)
        measured = cycles.ideal / (anchor.utilisation / 100)
        errors.append(cycles.total / measured - 1)
    return np.array(errors)


def fit(arch: str, start=START) -> tuple[dict[str, float], list[tuple[object, float]]]:
    """The fitted constants of one architecture (least squares from `start`), and every one of its rows with its
    error under them. The problem has shallow local minima: the solver's path, and so the minimum it stops in,
    can differ between CPUs' floating-point libraries."""
    rows = [a for a in GEMM_ANCHORS if CARDS[a.card].arch == arch]
    fit_rows = [a for a in rows if a.fitted]
    base = TENSIX[arch]

    def residuals(values):
        return relative_errors(replace(base, **dict(zip(FITTED, values))), fit_rows)

    values = dict(zip(FITTED, least_squares(residuals, start, bounds=(LOWER, UPPER)).x))
    return values, list(zip(rows, relative_errors(replace(base, **values), rows)))


def main() -> None:
    for arch in ("wormhole_b0", "blackhole"):
        values, errors = fit(arch)
        print(f"{arch}: " + ", ".join(f"{name}={value:.1f}" for name, value in values.items()))
        for anchor, error in errors:
            print(f"  {'fit ' if anchor.fitted else 'held'} {anchor.name:45} {100 * error:+6.1f}%")


if __name__ == "__main__":
    main()
