"""`QAModel`: a model source, a run configuration and a backend, ready to run batches.

    model = QAModel.load("minilm", config="BFLOAT16-DRAM", device="cpu")
    start, end = model(input_ids, token_type_ids, attention_mask)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from .cache import load_or_convert
from .config import DEFAULT_RUN_CONFIG, DEVICES, RunConfig, get_run_config
from .errors import UserError
from .model import bert_qa
from .ops import Backend
from .sources import LIBRARY_DEFAULT, ModelSource, resolve_model


@dataclass
class LoadReport:
    """How the weights got here: cache hit or conversion, and how long it took (cache + device placement).

    detail is one line: where the weights were loaded from, or why a cache was rejected and rebuilt; then the
    same for the backend's own cache, where it has one (the .tensorbin files, the fast path's int8 linears).
    """

    seconds: float
    cache_hit: bool = False
    detail: str = ""


@dataclass
class QAModel:
    source: ModelSource
    run_config: RunConfig
    ops: Backend
    params: object
    load_report: LoadReport = field(default_factory=lambda: LoadReport(0.0))
    device: str = "cpu"  # one of DEVICES
    fast: bool = False  # the torch backend's speed path, not the simulation of the config

    @classmethod
    def load(
        cls,
        model: str | ModelSource = LIBRARY_DEFAULT,
        config: str = DEFAULT_RUN_CONFIG,
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        fast: bool = False,
        trace: bool = False,
        mesh: tuple[int, int] = (1, 1),
        compile: str = "cached",
        math_fidelity: str | None = None,
        exact_accumulation: bool = False,
    ) -> "QAModel":
        """Weights come from the on-disk cache (`bertl11.cache`; cache_dir defaults to $BERTL11_CACHE or
        ~/.cache/bertl11): a hit never reads the source's weights, a miss converts them and writes the cache.
        `fast`: on cpu/cuda, the torch backend's speed path (`backends.fast.FastTorchOps`) instead of the
        per-op simulation of the config's numerics. `compile`: with `fast` on CPU, what to do when the compiled
        forward is not cached yet (`compiled.POLICIES`: "build" compiles it, minutes; "cached", the default,
        runs eager; "never" always runs eager). `trace`, `mesh`: on tt, the traced 2-queue forward and the
        chips it runs data parallel on (`backends.ttnn.TtnnOps`). `math_fidelity`: every matmul at LoFi, HiFi2,
        HiFi3 or HiFi4 instead of the seed's settings (`config.RunConfig.compute`). `exact_accumulation`: the
        simulation rounds the card's bfloat16 destination at every matrix-engine step (slow)."""
        source = model if isinstance(model, ModelSource) else resolve_model(model)
        run_config = get_run_config(config, math_fidelity)
        ops = make_ops(source, run_config, device, fast, cache_dir, trace, mesh, compile, exact_accumulation)
        started = time.perf_counter()
        flat, outcome = load_or_convert(source, run_config, cache_dir)
        params = ops.prepare(flat)
        detail = "; ".join(d for d in (outcome.detail, ops.cache_detail) if d)
        report = LoadReport(time.perf_counter() - started, outcome.hit, detail)
        return cls(source, run_config, ops, params, report, device, fast)

    def close(self) -> None:
        """Give the backend's device back (a Tenstorrent card; nothing to do for torch)."""
        self.ops.close()

    def __enter__(self) -> "QAModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def shape(self):
        return self.source.shape

    @property
    def tokenizer(self):
        return self.source.tokenizer

    @torch.inference_mode()
    def __call__(self, input_ids, token_type_ids, attention_mask):
        """Start and end logits as float32 CPU tensors [B, S]."""
        device = self.ops.torch_device
        start, end = self.ops.forward(
            bert_qa,
            self.params,
            input_ids.to(device),
            token_type_ids.to(device),
            attention_mask.to(device),
            self.shape,
        )
        return start.float().cpu(), end.float().cpu()

    def stream(self, batches: Iterable[tuple]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(start, end) for each (input_ids, token_type_ids, attention_mask), in order, as float32 CPU tensors; a
        backend may run the next batch while the host receives one (`Backend.forward_stream`)."""
        device = self.ops.torch_device
        on_device = (tuple(t.to(device) for t in batch) for batch in batches)
        with torch.inference_mode():
            for start, end in self.ops.forward_stream(bert_qa, self.params, on_device, self.shape):
                yield start.float().cpu(), end.float().cpu()


def require_visible(device: str) -> None:
    """Refuse --device cuda where torch sees no CUDA device, before any work starts."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch")


def make_ops(source: ModelSource, run_config: RunConfig, device: str, fast: bool = False,
             cache_dir: str | Path | None = None, trace: bool = False, mesh: tuple[int, int] = (1, 1),
             compile: str = "cached", exact_accumulation: bool = False) -> Backend:
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if exact_accumulation and (fast or device == "tt"):
        raise UserError(f"exact accumulation is a mode of the torch simulation, not of {'--fast' if fast else '--device tt'}")
    if fast and run_config.math_fidelity:
        raise UserError("--math-fidelity sets the card's matmuls and their simulation; --fast computes exactly")
    if device == "tt":
        from .backends.ttnn import TtnnOps
        from .cache import cache_directory, ttnn_cache_directory
        from .verified import MANIFEST

        return TtnnOps(source.shape, run_config, ttnn_cache_directory(cache_dir, source, run_config),
                       cache_directory(cache_dir, source, run_config) / MANIFEST, trace=trace, mesh=mesh)
    require_visible(device)
    if fast:
        from .backends.fast import FastTorchOps
        from .cache import compiled_cache, int8_cache

        return FastTorchOps(source.shape, run_config, device, int8_cache(cache_dir, source, run_config),
                            compiled_cache(cache_dir, source, run_config), compile)
    from .backends.torch import TorchOps

    return TorchOps(source.shape, run_config, device, exact_accumulation)
