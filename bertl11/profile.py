"""Timing every op of every layer, like the seed's device profile, as CSV rows and a bar chart (`bertl11 profile`).

`ProfilingOps` wraps a backend: each op call is timed (the device synchronised on both sides) and its
matmul FLOPs counted from the shapes. It does not fuse attention, so the model runs the seed's 11 encoder
ops one by one: the path the TT backend implements. Rows: embeddings, then 11 per layer, then the QA head.

FLOPs count matmuls only (2 per multiply-add; biases, softmax, layernorm and GELU count 0), so a layer
totals 24*s*d^2 + 4*s^2*d per sequence, the usual BERT figure.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from .files import atomic_output
from .ops import BATCHED_MATMUL, ENCODER_OPS, HEAD, LINEAR, OPS, Backend, op_label


def _shape(t) -> tuple[int, ...]:
    return tuple(int(n) for n in t.shape)


def _tensors(value) -> list:
    items = value if isinstance(value, tuple) else (value,)
    return [t for t in items if hasattr(t, "shape")]


def matmul_flops(op: str, args: tuple, out) -> int:
    """2 x multiply-adds of the op's matmul, from its input and output shapes (0 for other ops)."""
    kind = OPS[op].kind
    if kind == LINEAR:  # [B, S, K] x [K, N]
        return 2 * math.prod(_shape(args[0])) * _shape(out)[-1]
    if kind == HEAD:  # [B, S, H] x [H, 2], returned as start and end apart
        return 2 * math.prod(_shape(args[0])) * len(out)
    if kind == BATCHED_MATMUL:  # [B, N, M, K] x [B, N, K, N']: Q.K^T and probs.V
        a, b = args
        return 2 * math.prod(_shape(a)) * _shape(b)[-1]
    return 0


@dataclass
class OpCall:
    layer: int | None  # None for embeddings and the QA head
    op: str
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]]
    dtype: str
    flops: int
    seconds: float


class ProfilingOps(Backend):
    """A backend whose 13 ops (`ops.OPS`) are the wrapped backend's, timed; the rest passes through untimed."""

    def __init__(self, ops: Backend):
        self.ops = ops
        self.torch_device, self.card = ops.torch_device, ops.card
        self.calls: list[OpCall] = []
        self._layer = -1

    def begin_batch(self, batch: int, seq: int) -> None:
        self.ops.begin_batch(batch, seq)

    def synchronize(self) -> None:
        self.ops.synchronize()

    def describe(self) -> str:
        return self.ops.describe()

    def release(self, t) -> None:
        self.ops.release(t)

    def attention_mask(self, attention_mask):
        return self.ops.attention_mask(attention_mask)

    def _call(self, op: str, args: tuple):
        if op == ENCODER_OPS[0]:
            self._layer += 1
        self.ops.synchronize()  # asynchronous backends (torch CUDA, ttnn) finish earlier work first
        started = time.perf_counter()
        out = getattr(self.ops, op)(*args)  # every name in OPS is a declared Backend op
        self.ops.synchronize()
        seconds = time.perf_counter() - started
        outputs = _tensors(out)
        self.calls.append(OpCall(
            layer=self._layer if op in ENCODER_OPS else None,
            op=op,
            input_shapes=[_shape(t) for t in args if hasattr(t, "shape")],
            output_shapes=[_shape(t) for t in outputs],
            dtype=str(outputs[0].dtype).removeprefix("torch."),
            flops=matmul_flops(op, args, out),
            seconds=seconds,
        ))
        return out


def _profiled(op: str):
    def call(self, *args):
        return self._call(op, args)

    call.__name__ = op
    return call


for _op in OPS:
    setattr(ProfilingOps, _op, _profiled(_op))


def profile_model(model, inputs, iterations: int) -> list[OpCall]:
    """One warm-up run, then `iterations` profiled runs; each op's median duration."""
    from tqdm.auto import tqdm

    runs = []
    for _ in tqdm(range(iterations + 1), desc="profiled runs", unit="run", leave=False):
        ops = ProfilingOps(model.ops)
        dataclasses.replace(model, ops=ops)(*inputs)
        runs.append(ops.calls)
    timed = runs[1:]
    return [dataclasses.replace(call, seconds=median(run[i].seconds for run in timed)) for i, call in enumerate(timed[0])]


def report_rows(calls: list[OpCall]) -> list[dict]:
    total = sum(c.seconds for c in calls)
    return [
        {
            "Layer": "" if c.layer is None else c.layer,
            "Op": c.op,
            "Op Name": op_label(c.op),
            "Input Shapes": " ".join("x".join(map(str, s)) for s in c.input_shapes),
            "Output Shapes": " ".join("x".join(map(str, s)) for s in c.output_shapes),
            "Dtype": c.dtype,
            "Duration (ms)": round(c.seconds * 1e3, 4),
            "FLOPs": c.flops,
            "GFLOP/s": round(c.flops / c.seconds / 1e9, 2) if c.flops else "",
            "Share (%)": round(100 * c.seconds / total, 3),
        }
        for c in calls
    ]


def totals_by_op(calls: list[OpCall]) -> dict[str, tuple[float, int]]:
    """{op: (seconds, FLOPs)} summed over layers, in execution order."""
    totals: dict[str, tuple[float, int]] = {}
    for c in calls:
        seconds, flops = totals.get(c.op, (0.0, 0))
        totals[c.op] = (seconds + c.seconds, flops + c.flops)
    return totals


def plot(calls: list[OpCall], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = totals_by_op(calls)
    total = sum(seconds for seconds, _ in totals.values())
    labels = [op_label(op) for op in totals]
    millis = [seconds * 1e3 for seconds, _ in totals.values()]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    bars = ax.barh(labels, millis, color="#4c72b0")
    ax.invert_yaxis()  # execution order, top to bottom
    ax.bar_label(bars, labels=[f"{100 * m / 1e3 / total:.1f}%" for m in millis], padding=3, fontsize=8)
    ax.set_xlabel("time per inference, summed over layers (ms)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.12)
    fig.tight_layout()
    with atomic_output(path, "--plot") as temporary:
        fig.savefig(temporary, format="png", dpi=110)
    plt.close(fig)
