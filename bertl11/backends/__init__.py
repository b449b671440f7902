"""Backends implement `bertl11.ops.Backend`: torch for CPU/CUDA, ttnn for Tenstorrent, and the grid emulator."""
