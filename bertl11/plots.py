"""Pictures the notebooks show: numbers people would rather see than read."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .plan import Plan


def quantization_error(weight: torch.Tensor, title: str = "rounding error of one weight matrix"):
    """Histogram of |rounded - exact| / group scale for BFLOAT16 and BFLOAT8_B: how much each format loses."""
    import matplotlib.pyplot as plt

    from . import bfp8

    exact = weight.float().flatten()
    scale = exact.abs().max()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, rounded in (("BFLOAT16", exact.bfloat16().float()), ("BFLOAT8_B", bfp8.quantize(weight).float().flatten())):
        error = ((rounded - exact).abs() / scale).clamp_min(1e-12).log10()
        ax.hist(error.numpy(), bins=80, alpha=0.6, label=label)
    ax.set_xlabel("log10(|rounded - exact| / max |w|)")
    ax.set_ylabel("values")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def threshold_curve(curves: dict[str, list[tuple[float, float, float]]], title: str = "score by na_prob threshold"):
    """F1 against the na_prob threshold, one line per run (from `squad.metric.threshold_curve`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, curve in curves.items():
        thresholds, _, f1 = zip(*curve)
        ax.step(thresholds, f1, where="post", label=label)
    ax.set_xlabel("na_prob threshold (above it: predict no answer)")
    ax.set_ylabel("F1 (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def ops_bars(report, column: str, title: str, xlabel: str):
    """One horizontal bar per op of a `bertl11 profile` report (its CSV as a DataFrame), in execution order:
    "Duration (ms)" summed over layers, each bar labelled with its share of the total; another column averaged."""
    import matplotlib.pyplot as plt

    values = report.groupby("Op Name", sort=False)[column]
    summed = column == "Duration (ms)"
    series = values.sum() if summed else values.mean()
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(series) + 1))
    bars = ax.barh(series.index, series.values, color="#4c72b0")
    ax.invert_yaxis()  # execution order, top to bottom
    if summed:
        total = series.sum()
        ax.bar_label(bars, labels=[f"{100 * value / total:.1f}%" for value in series.values], padding=3, fontsize=8)
        ax.margins(x=0.12)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def grid_picture(plan: Plan, ax=None):
    """The card's core grid, each used core labelled with the sequence and heads it holds (matplotlib)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    dx, dy = plan.card.grid
    if ax is None:
        _, ax = plt.subplots(figsize=(0.8 * dx + 1, 0.6 * dy + 1))
    colours = plt.get_cmap("tab20")
    used = {plan.core(b, g): (b, g) for b in range(plan.batch) for g in range(plan.groups)}
    per_core = plan.shape.heads // plan.groups
    for x in range(dx):
        for y in range(dy):
            b_g = used.get((x, y))
            colour = colours(b_g[0] % 20) if b_g else "0.9"
            ax.add_patch(Rectangle((x, y), 0.95, 0.95, facecolor=colour, edgecolor="white"))
            if b_g:
                b, g = b_g
                ax.text(x + 0.47, y + 0.47, f"s{b}\nh{g * per_core}-{(g + 1) * per_core - 1}", ha="center", va="center", fontsize=7)
    ax.set_xlim(0, dx)
    ax.set_ylim(dy, 0)  # core (0, 0) top-left, as tt-metal draws the grid
    ax.set_aspect("equal")
    ax.set_xticks([i + 0.47 for i in range(dx)], range(dx))
    ax.set_yticks([i + 0.47 for i in range(dy)], range(dy))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{plan.card.title}: batch {plan.batch} on {plan.grid[0]}x{plan.grid[1]} cores ({plan.orientation}); s = sequence, h = heads")
    return ax.figure


def config_scores(scores: dict[str, dict[str, float]], columns=("f1", "HasAns_f1", "NoAns_exact"),
                  title: str = "held-out SQuAD v2 scores by configuration"):
    """Grouped bars: one group per run configuration, one bar per score (percentages)."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(scores)
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, column in enumerate(columns):
        ax.bar(np.arange(len(names)) + i * width, [scores[n][column] for n in names], width, label=column)
    ax.set_xticks(np.arange(len(names)) + width * (len(columns) - 1) / 2, names, rotation=15, fontsize=8)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def shares_side_by_side(columns: dict[str, dict[str, float]], title: str):
    """Grouped horizontal bars: each op's share (%) of the total in each column ({column: {op: time}}), ops in the
    first column's order (e.g. a predicted device breakdown beside a measured CPU profile)."""
    import matplotlib.pyplot as plt
    import numpy as np

    ops = list(next(iter(columns.values())))
    height = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ops) + 1.2))
    for i, (label, times) in enumerate(columns.items()):
        total = sum(times.values())
        ax.barh(np.arange(len(ops)) + i * height, [100 * times.get(op, 0.0) / total for op in ops], height, label=label)
    ax.set_yticks(np.arange(len(ops)) + height * (len(columns) - 1) / 2, ops, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the forward's time (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roofline(estimate):
    """The matmuls of an estimated forward (`estimate.Estimate`) on a roofline of the plan's grid: FLOPs per byte of
    their tensors against the predicted TFLOP/s, marked by what bounds them, under the matrix engines' peak and the
    DRAM and L1 bandwidth lines (`estimate.roofs`)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .estimate import roofs

    peak, bandwidths = roofs(estimate.plan, estimate.fidelity)
    points = {}
    for op in estimate.ops:
        if op.flops and op.layer in (None, 0):
            intensity = op.flops / sum(t.bytes for t in (*op.inputs, op.output))
            points.setdefault(op.bound, []).append((intensity, op.flops / op.ns / 1e3, op.label))
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.logspace(0, 4, 100)
    ax.plot(x, np.full_like(x, peak), "k-", label=f"matrix engines at {estimate.fidelity}: {peak:.0f} TFLOP/s")
    for (name, gbps), style in zip(bandwidths.items(), ("--", ":")):
        ax.plot(x, np.minimum(x * gbps / 1e3, peak), "k" + style, label=f"{name}: {gbps:,.0f} GB/s")
    for (bound, found), marker in zip(sorted(points.items()), "osD^v"):
        ax.scatter([p[0] for p in found], [p[1] for p in found], marker=marker, s=40, label=f"bound: {bound}", zorder=3)
        for intensity, rate, label in found:
            ax.annotate(label, (intensity, rate), fontsize=7, xytext=(4, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per byte of the op's tensors")
    ax.set_ylabel("TFLOP/s")
    plan = estimate.plan
    ax.set_title(f"{plan.card.title}, batch {plan.batch}, {plan.config.name}: matmuls on the roofline", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def throughput_curves(curves: dict[str, list[tuple[int, float]]], title: str, ylabel: str = "samples/s on the device"):
    """One line per card or setting: samples/s against batch ({label: [(batch, samples/s), ...]})."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, points in curves.items():
        batches, rates = zip(*points)
        ax.plot(batches, rates, "o-", label=label)
    ax.set_xlabel("batch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
