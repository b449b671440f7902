"""Backends implement the op interface (`bertl11.ops.Ops`): torch for CPU/CUDA, ttnn for Tenstorrent."""
