"""`bertl11 perf`: end-to-end throughput, first run and cached runs, side by side with HF transformers.

Like the seed's perf test: the first run (any compile, graph capture or lazy setup included), then N cached
runs; inferences/s = batch / mean cached time. `--compare hf` times HF's `BertForQuestionAnswering` (eager,
on the same device, or on the host for --device tt) on the same inputs in float32 and, where this machine
has native bfloat16 GEMMs (`machine.probe`), in bfloat16, alternating with ours run by run so all see the
same machine load. The faster HF dtype is the yardstick; both are reported, with our logits' PCC against
HF in float32.

Inputs are seeded random token ids filling every one of the `--seq` positions (no padding to skip), the
first quarter question (token type 0), the rest context (1).
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean, median

import torch

from . import options
from .compare import pcc
from .errors import UserError
from .files import check_output_path, write_csv

INPUT_SEED = 384
DEFAULT_ITERATIONS = 10


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


def add_model_arguments(parser, *, default_iterations: int = DEFAULT_ITERATIONS, trace: bool | None = None) -> None:
    """The options `perf` and `profile` share: the model options (fast path by default) and the input's shape.
    `trace`: perf offers --trace (off by default: the first run then shows the op-by-op path); profile times ops."""
    options.add_model_options(parser, batch=1, fast=True, batch_help="sequences per inference", trace=trace)
    parser.add_argument("--seq", type=options.count("--seq", 2), default=384, help="sequence length (default %(default)s)")
    parser.add_argument("--iterations", type=options.count("--iterations"), default=default_iterations,
                        help="cached runs to time after the first (default %(default)s)")


def add_arguments(parser) -> None:
    add_model_arguments(parser, trace=False)
    parser.add_argument("--compare", choices=("hf",), default=None,
                        help="also time HF transformers BertForQuestionAnswering on the same inputs, in float32 "
                             "and (where native) bfloat16; the faster is the yardstick")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (on CUDA with CUDA graphs); the first run includes compilation")
    parser.add_argument("--csv", type=Path, default=None, help="write the report as a one-row CSV")


def load_model(args, outputs: dict[str, Path | None]):
    """The model `args` describe, with its sequence length checked against its position table. The `outputs`
    ({option: path}) are checked first: a bad output path is refused before a long run, not after it."""
    for option, path in outputs.items():
        if path is not None:
            check_output_path(path, option)
    model = options.load_model(args)
    if args.seq > model.shape.max_position_embeddings:
        raise UserError(f"--seq {args.seq} exceeds the model's {model.shape.max_position_embeddings} positions")
    return model


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
        on_device = (t.to(model.ops.device) for t in (input_ids, token_type_ids, attention_mask))
        start, end = forward(*on_device)
        return start.float().cpu(), end.float().cpu()

    return run


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


def measure(args) -> dict:
    """Run the benchmark `args` describe and return the report row."""
    with load_model(args, {"--csv": args.csv}) as model:
        return _measure(model, args)


def _measure(model, args) -> dict:
    from tqdm.auto import tqdm

    inputs = synthetic_inputs(model.shape.vocab_size, args.batch, args.seq)
    ours_run = compiled(model, args.device) if args.compile else model
    ours, theirs = Timing(), Timing()
    ours.first, logits = timed(ours_run, inputs)
    logits = torch.stack(logits)
    row = {
        "Model": model.source.name, "Config": args.config, "Device": args.device, "Numerics": model.ops.describe(),
        "Path": ("fast" if args.fast else "simulated") + (", compiled" if args.compile else ""),
        "Batch": args.batch, "Seq": args.seq, "Iterations": args.iterations, "Threads": torch.get_num_threads(),
        "Load Time (s)": round(model.load_report.seconds, 3),
    }
    kernel = model.ops.kernel()
    if kernel is not None:
        row["Kernel"] = kernel
    hf_runs, theirs, skipped = {}, {}, ""
    if args.compare == "hf":
        dtypes, skipped = hf_dtypes(args.device)
        hf32 = model.source.hf_model().to(args.device if args.device in ("cpu", "cuda") else "cpu")
        reference = hf_logits(hf32, inputs)
        row["PCC vs HF float32 (start)"] = round(pcc(logits[0], reference[0]), 6)
        row["PCC vs HF float32 (end)"] = round(pcc(logits[1], reference[1]), 6)
        for dtype in dtypes:
            hf = hf32 if dtype == torch.float32 else copy.deepcopy(hf32).to(dtype)
            hf_runs[dtype] = lambda *i, hf=hf: hf_logits(hf, i)
            theirs[dtype] = Timing()
            theirs[dtype].first, _ = timed(hf_runs[dtype], inputs)
    for _ in tqdm(range(args.iterations), desc="cached runs", unit="run", leave=False):
        ours.cached.append(timed(ours_run, inputs)[0])
        for dtype, hf_run in hf_runs.items():
            theirs[dtype].cached.append(timed(hf_run, inputs)[0])
    row |= {
        "First Run (s)": round(ours.first, 4),
        "Compile Time (s)": round(max(ours.first - ours.mean, 0.0), 4),
        "Inference Time (s)": round(ours.mean, 4),
        "Min Inference Time (s)": round(ours.best, 4),
        "Throughput (inf/s)": round(ours.throughput(args.batch), 3),
    }
    if theirs:
        yardstick = min(theirs, key=lambda dtype: theirs[dtype].mean)
        row |= {
            "HF Dtype": dtype_name(yardstick),
            "HF First Run (s)": round(theirs[yardstick].first, 4),
            "HF Inference Time (s)": round(theirs[yardstick].mean, 4),
            "HF Throughput (inf/s)": round(theirs[yardstick].throughput(args.batch), 3),
            "Speedup vs HF": round(paired_speedup(ours, theirs[yardstick]), 2),
        }
        for dtype in (torch.float32, torch.bfloat16):
            name = dtype_name(dtype)
            timing = theirs.get(dtype)
            row[f"HF {name} Throughput (inf/s)"] = round(timing.throughput(args.batch), 3) if timing else skipped
            row[f"Speedup vs HF {name}"] = round(paired_speedup(ours, timing), 2) if timing else skipped
    row["Versions"] = versions()
    return row


def run(args) -> int:
    row = measure(args)
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")
    if args.csv:
        write_csv(args.csv, [row])
        print(f"wrote {args.csv}")
    return 0
