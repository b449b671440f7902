"""End-to-end throughput, first run and cached runs, side by side with HF transformers (`bertl11 perf`).

Like the seed's perf test: the first run (any compile, graph capture or lazy setup included), then N cached
runs; inferences/s = batch / mean cached time. `--compare hf` times HF's `BertForQuestionAnswering` (eager,
on the same device, or on the host for --device tt) on the same inputs in float32 and, where this machine
has native bfloat16 GEMMs (`machine.probe`), in bfloat16, alternating with ours run by run so all see the
same machine load. The faster HF dtype is the yardstick; both are reported, with our logits' PCC against
HF in float32.

Inputs are seeded random token ids filling every one of the `--seq` positions (no padding to skip), the
first quarter question (token type 0), the rest context (1).

Utilisation, as nanoGPT's MFU: the forward's matmul operations (`profile.model_flops`, 2 per multiply-add,
float or int8) per second of the mean cached run, against the peak `machine.probe` measured for the kernel
the GEMMs run (per thread, times the threads).
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass, field
from statistics import fmean, median

import torch

from .compare import pcc
from .errors import UserError

INPUT_SEED = 384


@dataclass
class Timing:
    """Seconds of the first run and of each cached run."""

    first: float = 0.0
    cached: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return fmean(self.cached)

    @property
    def best(self) -> float:
        return min(self.cached)

    def throughput(self, batch: int) -> float:
        return batch / self.mean


def paired_speedup(ours: Timing, reference: Timing) -> float:
    """Median over iterations of reference time / our time, each pair timed back to back.

    Other work on a shared machine slows both runs of a pair alike, so the median pair ratio holds steady
    where the ratio of means drifts with the load.
    """
    return median(r / o for o, r in zip(ours.cached, reference.cached))


def synthetic_inputs(vocab_size: int, batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded (input_ids, token_type_ids, attention_mask) with every position a real token."""
    generator = torch.Generator().manual_seed(INPUT_SEED)
    input_ids = torch.randint(1000, vocab_size, (batch, seq), generator=generator)
    token_type_ids = (torch.arange(seq) >= seq // 4).long().expand(batch, -1).contiguous()
    return input_ids, token_type_ids, torch.ones_like(input_ids)


def hf_dtypes(device: str) -> tuple[list[torch.dtype], str]:
    """The dtypes HF is timed in on `device`: float32, and bfloat16 where its GEMMs are native; and, where
    they are not, why bfloat16 is left out."""
    if device == "cuda":
        return [torch.float32, torch.bfloat16], ""
    from . import machine

    found = machine.probe()
    if found.native("bfloat16"):
        return [torch.float32, torch.bfloat16], ""
    return [torch.float32], (f"not timed: bfloat16 GEMMs fall back to a reference kernel on this CPU "
                             f"({found.rate_text('bfloat16')} vs {found.rate_text('float32')})")


def hf_logits(hf, inputs) -> torch.Tensor:
    """HF start/end logits as one float32 CPU tensor [2, B, S]."""
    device = next(hf.parameters()).device
    input_ids, token_type_ids, attention_mask = (t.to(device) for t in inputs)
    with torch.inference_mode():
        out = hf(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
    return torch.stack([out.start_logits.float().cpu(), out.end_logits.float().cpu()])


def compiled(model, device: str):
    """The torch backend's model under torch.compile; on CUDA "reduce-overhead" also captures CUDA graphs.

    Only the device-side forward is compiled: host<->device copies inside it would keep CUDA graphs off.
    """
    from .model import bert_qa

    if device not in ("cpu", "cuda"):
        raise UserError("--compile applies to the torch backend (--device cpu or cuda)")
    forward = torch.compile(
        lambda ids, types, mask: bert_qa(model.ops, model.params, ids, types, mask, model.shape),
        mode="reduce-overhead" if device == "cuda" else None,
        dynamic=False,
    )

    @torch.inference_mode()
    def run(input_ids, token_type_ids, attention_mask):
        on_device = (t.to(model.ops.torch_device) for t in (input_ids, token_type_ids, attention_mask))
        start, end = forward(*on_device)
        return start.float().cpu(), end.float().cpu()

    return run


def compiled_forward(model) -> bool:
    """Whether the model's fast path runs its compiled forward (`compiled.py`)."""
    return getattr(model.ops, "compiled_forward", None) is not None


def utilisation(model, batch: int, seq: int, seconds: float) -> dict:
    """Achieved GOP/s of the forward and, where the probe measured the GEMMs' kernel, its peak on this many
    threads and the share of it reached."""
    from .profile import model_flops

    achieved = model_flops(model.shape, batch, seq) / seconds / 1e9
    row = {"Achieved (GOP/s)": round(achieved, 1)}
    kernel = model.ops.peak_kernel()
    if kernel is None:
        return row
    from . import machine

    found = machine.probe()
    if kernel not in found.rates:
        return row
    peak = found.rates[kernel] * torch.get_num_threads()
    return row | {"Peak Kernel": kernel, "Peak (GOP/s)": round(peak, 1), "Utilisation (%)": round(100 * achieved / peak, 1)}


def timed(run, inputs) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    out = run(*inputs)  # both sides return CPU tensors, so device work has finished when this returns
    return time.perf_counter() - started, out


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def versions() -> str:
    import transformers

    from . import __version__

    return f"bertl11 {__version__}; torch {torch.__version__}; transformers {transformers.__version__}; python {platform.python_version()}"


def measure(model, *, batch: int, seq: int, iterations: int, compare_hf: bool = False, compile: bool = False) -> dict:
    """The report row of `model` run `iterations` times after a first run on seeded inputs of `batch` x `seq`;
    with `compare_hf`, HF's model is timed run by run beside it (the faster of its dtypes is the yardstick)."""
    from tqdm.auto import tqdm

    device = model.device
    inputs = synthetic_inputs(model.shape.vocab_size, batch, seq)
    ours_run = compiled(model, device) if compile else model
    ours, theirs = Timing(), Timing()
    ours.first, logits = timed(ours_run, inputs)
    logits = torch.stack(logits)
    row = {
        "Model": model.source.name, "Config": model.run_config.name, "Device": device, "Numerics": model.ops.describe(),
        "Path": ("fast" if model.fast else "simulated") + (", compiled" if compile or compiled_forward(model) else ""),
        "Batch": batch, "Seq": seq, "Iterations": iterations, "Threads": torch.get_num_threads(),
        "Load Time (s)": round(model.load_report.seconds, 3), "Load Detail": model.load_report.detail,
    }
    kernel = model.ops.kernel()
    if kernel is not None:
        row["Kernel"] = kernel
    hf_runs, theirs, skipped = {}, {}, ""
    if compare_hf:
        dtypes, skipped = hf_dtypes(device)
        hf32 = model.source.hf_model().to(device if device in ("cpu", "cuda") else "cpu")
        reference = hf_logits(hf32, inputs)
        row["PCC vs HF float32 (start)"] = round(pcc(logits[0], reference[0]), 6)
        row["PCC vs HF float32 (end)"] = round(pcc(logits[1], reference[1]), 6)
        for dtype in dtypes:
            hf = hf32 if dtype == torch.float32 else copy.deepcopy(hf32).to(dtype)
            hf_runs[dtype] = lambda *i, hf=hf: hf_logits(hf, i)
            theirs[dtype] = Timing()
            theirs[dtype].first, _ = timed(hf_runs[dtype], inputs)
    for _ in tqdm(range(iterations), desc="cached runs", unit="run", leave=False):
        ours.cached.append(timed(ours_run, inputs)[0])
        for dtype, hf_run in hf_runs.items():
            theirs[dtype].cached.append(timed(hf_run, inputs)[0])
    row |= {
        "First Run (s)": round(ours.first, 4),
        "Compile Time (s)": round(max(ours.first - ours.mean, 0.0), 4),
        "Inference Time (s)": round(ours.mean, 4),
        "Min Inference Time (s)": round(ours.best, 4),
        "Throughput (inf/s)": round(ours.throughput(batch), 3),
        **utilisation(model, batch, seq, ours.mean),
    }
    if theirs:
        yardstick = min(theirs, key=lambda dtype: theirs[dtype].mean)
        row |= {
            "HF Dtype": dtype_name(yardstick),
            "HF First Run (s)": round(theirs[yardstick].first, 4),
            "HF Inference Time (s)": round(theirs[yardstick].mean, 4),
            "HF Throughput (inf/s)": round(theirs[yardstick].throughput(batch), 3),
            "Speedup vs HF": round(paired_speedup(ours, theirs[yardstick]), 2),
        }
        for dtype in (torch.float32, torch.bfloat16):
            name = dtype_name(dtype)
            timing = theirs.get(dtype)
            row[f"HF {name} Throughput (inf/s)"] = round(timing.throughput(batch), 3) if timing else skipped
            row[f"Speedup vs HF {name}"] = round(paired_speedup(ours, timing), 2) if timing else skipped
    row["Versions"] = versions()
    return row
