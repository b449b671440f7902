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
