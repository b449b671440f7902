"""Timing every op of every layer, like the seed's device profile, as CSV rows and a bar chart (`bertl11 profile`).

The model runs through a timed `recording.Recording` of its backend (each op call timed with the backend
synchronised on both sides, the seed's 11 encoder ops one by one); each call's matmul FLOPs are counted from its
shapes. Rows: embeddings, then 11 per layer, then the QA head.

FLOPs count matmuls only (2 per multiply-add; biases, softmax, layernorm and GELU count 0), so a layer
totals 24*s*d^2 + 4*s^2*d per sequence, the usual BERT figure.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from statistics import median

from .files import atomic_output
from .ops import BATCHED_MATMUL, HEAD, LINEAR, OPS, op_label
from .recording import OpCall, Recording


def matmul_flops(call: OpCall) -> int:
    """2 x multiply-adds of the call's matmul, from its input and output shapes (0 for other ops)."""
    kind = OPS[call.op].kind
    if kind == LINEAR:  # [B, S, K] x [K, N]
        return 2 * math.prod(call.input_shapes[0]) * call.output_shapes[0][-1]
    if kind == HEAD:  # [B, S, H] x [H, 2], returned as start and end apart
        return 2 * math.prod(call.input_shapes[0]) * len(call.output_shapes)
    if kind == BATCHED_MATMUL:  # [B, N, M, K] x [B, N, K, N']: Q.K^T and probs.V
        return 2 * math.prod(call.input_shapes[0]) * call.input_shapes[1][-1]
    return 0


def model_flops(shape, batch: int, seq: int) -> int:
    """The forward's matmul FLOPs on `batch` sequences of `seq` tokens, counted as `matmul_flops` counts each call:
    per layer the four linears (QKV, self-output, FF1, FF2) and Q.K^T and probs.V, then the QA head."""
    tokens, hidden = batch * seq, shape.hidden_size
    linears = 2 * tokens * hidden * (3 * hidden + hidden + 2 * shape.intermediate_size)
    attention = 2 * 2 * batch * seq * seq * hidden
    return shape.num_layers * (linears + attention) + 2 * tokens * hidden * 2


def profile_model(model, inputs, iterations: int) -> list[OpCall]:
    """One warm-up run, then `iterations` profiled runs; each op's median duration."""
    from tqdm.auto import tqdm

    runs = []
    for _ in tqdm(range(iterations + 1), desc="profiled runs", unit="run", leave=False):
        recording = Recording(model.ops, timed=True)
        dataclasses.replace(model, ops=recording)(*inputs)
        runs.append(recording.calls)
    timed = runs[1:]
    return [dataclasses.replace(call, seconds=median(run[i].seconds for run in timed)) for i, call in enumerate(timed[0])]


def report_rows(calls: list[OpCall]) -> list[dict]:
    total = sum(c.seconds for c in calls)
    rows = []
    for c in calls:
        flops = matmul_flops(c)
        rows.append({
            "Layer": "" if c.layer is None else c.layer,
            "Op": c.op,
            "Op Name": op_label(c.op),
            "Input Shapes": " ".join("x".join(map(str, s)) for s in c.input_shapes),
            "Output Shapes": " ".join("x".join(map(str, s)) for s in c.output_shapes),
            "Dtype": c.dtype,
            "Duration (ms)": round(c.seconds * 1e3, 4),
            "FLOPs": flops,
            "GFLOP/s": round(flops / c.seconds / 1e9, 2) if flops else "",
            "Share (%)": round(100 * c.seconds / total, 3),
        })
    return rows


def totals_by_op(calls: list[OpCall]) -> dict[str, tuple[float, int]]:
    """{op: (seconds, FLOPs)} summed over layers, in execution order."""
    totals: dict[str, tuple[float, int]] = {}
    for c in calls:
        seconds, flops = totals.get(c.op, (0.0, 0))
        totals[c.op] = (seconds + c.seconds, flops + matmul_flops(c))
    return totals


def plot(calls: list[OpCall], path: Path, title: str) -> None:
    """Time per op, summed over layers, as a PNG bar chart: the rows `report_rows` writes, drawn by `plots.ops_bars`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .plots import ops_bars

    figure = ops_bars(pd.DataFrame(report_rows(calls)), "Duration (ms)", title, "time per inference, summed over layers (ms)")
    with atomic_output(path, "--plot") as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
