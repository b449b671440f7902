"""Comparing logits: Pearson correlation (the tt-metal tests' PCC) and max abs difference."""

from __future__ import annotations

import torch


def pcc(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors' values, as tt-metal's comp_pcc computes it."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    if torch.equal(a, b):
        return 1.0
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())
