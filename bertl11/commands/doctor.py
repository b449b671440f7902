"""`bertl11 doctor`: what this machine runs, one line per fact: versions, the CPU and what the probe measured
(`machine.probe`), how the fast path runs its forward, CUDA devices, the GEMM each run configuration uses here
and why, the compute kernel settings each configuration's ops run with on a card (and in its simulation), what has
run on each Tenstorrent card and what is untested there, and the weight cache."""

from __future__ import annotations

import platform
from pathlib import Path

from . import options

# Where `cache.cache_root` says the cache root came from, as the user set it.
ROOT_ORIGINS = {"given": "--cache-dir", "default": "default"}


def add_arguments(parser) -> None:
    options.add_cache_dir_option(parser)


def report_lines(cache_dir: Path | None = None) -> list[str]:
    import torch

    from .. import __version__
    from ..backends.fast import FastTorchOps
    from ..backends.torch import TorchOps
    from ..cache import cache_root
    from ..cards import CARDS
    from ..config import RUN_CONFIGS, BertShape
    from ..machine import PROBE_SHAPE, cpu_name, cuda_devices, package_version, probe

    found = probe()
    rates = ", ".join(found.rate_text(k) for k in found.rates)
    m, k, n = PROBE_SHAPE
    lines = [
        f"bertl11: {__version__} (python {platform.python_version()})",
        f"torch: {torch.__version__}",
        f"transformers: {package_version('transformers')}",
        f"ttnn: {package_version('ttnn')}",
        f"onnxruntime: {package_version('onnxruntime')} (benchmarks only: pip install '.[bench]' in a bertl11 checkout)",
        f"torchao: {package_version('torchao')} (the compiled forward's int8 linears)",
        f"CPU: {cpu_name()}; torch capability {found.capability}; flags {found.flags_text()}",
        f"threads: {found.threads} (torch.get_num_threads)",
        f"GEMM rates, one thread, {m}x{k} @ {k}x{n} (int8: the linear as the fast path runs it): {rates}",
        f"fast path on cpu: {found.forward().kernel} forward ({found.forward().reason})",
        f"CUDA: {'; '.join(cuda_devices()) or 'no CUDA device visible'}",
    ]
    shape = BertShape(30522, 1024, 24, 16, 4096, 512, 2, 1e-12, "gelu")  # BERT-large; kernels depend on config only
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for name, run_config in RUN_CONFIGS.items():
            simulated = TorchOps(shape, run_config, device).kernel()
            fast = FastTorchOps(shape, run_config, device).kernel()
            lines.append(f"GEMM {name} on {device}: simulation {simulated}; --fast {fast}")
    lines += compute_lines()
    lines += [f"Tenstorrent {card.tested_text()}" for card in CARDS.values()]
    root, origin = cache_root(cache_dir)
    lines.append(f"weight cache: {root} ({ROOT_ORIGINS.get(origin, '$' + origin)}; "
                 f"{'exists' if root.is_dir() else 'not created yet'})")
    return lines


def compute_lines() -> list[str]:
    """One line per card configuration: its ops grouped by compute kernel settings (`RunConfig.compute`)."""
    from ..config import TT_CONFIGS, get_run_config
    from ..ops import OPS

    lines = []
    for name in TT_CONFIGS:
        config = get_run_config(name)
        groups: dict[str, list[str]] = {}
        for op, spec in OPS.items():
            settings = config.compute(op)
            if settings is not None:
                groups.setdefault(settings.describe(), []).append(spec.title)
        described = "; ".join(f"{settings}: {', '.join(dict.fromkeys(titles))}" for settings, titles in groups.items())
        lines.append(f"compute {name} (the seed's on ttnn 0.81; --math-fidelity sets the matmuls'): {described}")
    return lines


def run(args) -> int:
    for line in report_lines(args.cache_dir):
        print(line)
    return 0
