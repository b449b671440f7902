"""`QAModel`: a model source, a run configuration and a backend, ready to run batches.

    model = QAModel.load("minilm", config="BFLOAT16-DRAM", device="cpu")
    start, end = model(input_ids, token_type_ids, attention_mask)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .config import DEFAULT_RUN_CONFIG, RunConfig, get_run_config
from .errors import UserError
from .model import bert_qa
from .sources import ModelSource, resolve_model
from .weights import import_state_dict

DEVICES = ("cpu", "cuda", "tt")


@dataclass
class LoadReport:
    """How the weights got here: cache hit or conversion, and how long it took."""

    seconds: float
    cache_hit: bool = False
    detail: str = ""


@dataclass
class QAModel:
    source: ModelSource
    run_config: RunConfig
    ops: object
    params: object
    load_report: LoadReport = field(default_factory=lambda: LoadReport(0.0))

    @classmethod
    def load(cls, model: str | ModelSource = "minilm", config: str = DEFAULT_RUN_CONFIG, device: str = "cpu") -> "QAModel":
        source = model if isinstance(model, ModelSource) else resolve_model(model)
        run_config = get_run_config(config)
        ops = make_ops(source, run_config, device)
        started = time.perf_counter()
        flat = import_state_dict(source.state_dict(), source.shape)
        params = ops.prepare(flat)
        return cls(source, run_config, ops, params, LoadReport(time.perf_counter() - started, False, "converted"))

    @property
    def shape(self):
        return self.source.shape

    @property
    def tokenizer(self):
        return self.source.tokenizer

    @torch.inference_mode()
    def __call__(self, input_ids, token_type_ids, attention_mask):
        """Start and end logits as float32 CPU tensors [B, S]."""
        device = self.ops.device
        start, end = bert_qa(
            self.ops,
            self.params,
            input_ids.to(device),
            token_type_ids.to(device),
            attention_mask.to(device),
            self.shape,
        )
        return start.float().cpu(), end.float().cpu()


def make_ops(source: ModelSource, run_config: RunConfig, device: str):
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if device == "tt":
        raise UserError("the ttnn backend is not available yet")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch")
    from .backends.torch import TorchOps

    return TorchOps(source.shape, run_config, device)
