"""bertl11's torch paths against HF transformers eager and ONNX Runtime, BERT-large at seq 384, same process,
interleaved.

    python benchmarks/perf_benchmark.py                      # large-random, batch 1 and 8, all variants
    python benchmarks/perf_benchmark.py --variants compiled-int8 ort-int8 --batches 1 --rounds 5 --threads 2

Every round runs each variant once per batch size, the yardsticks first, so all see the same machine load;
a speedup is the median over rounds of (reference time / variant time) from the same round.
Yardsticks: HF eager in float32 and, where this CPU has native bfloat16 GEMMs (`bertl11.machine`), in
bfloat16; both are printed, and `x HF` is against the faster. `x ORT` is against ONNX Runtime's faster
variant. PCC is against HF in float32 on the same inputs (every position a real token, see `bertl11.perf`).
GOP/s is the forward's matmul operations per second (`bertl11.profile.model_flops`); for bertl11's variants,
`% peak` is its share of the rate `bertl11 doctor` probed for the kernel the GEMMs run, times the threads.

Variants:
    simulated-bf16    the 11-op simulation of BFLOAT16-DRAM (the parity-tested path)
    fast-bf16         BFLOAT16-DRAM fast path, eager: no per-op rounding, SDPA for ops 3-5
    fast-fp32         FLOAT32 fast path, eager: the same in float32
    fast-int8         BFLOAT8_B-SHARDED fast path, eager: the int8 kernel `bertl11 doctor` names, float32 elsewhere
    compiled-bf16     BFLOAT16-DRAM fast path, compiled (`bertl11.compiled`: AOTInductor, frozen weights)
    compiled-fp32     FLOAT32 fast path, compiled
    compiled-int8     BFLOAT8_B-SHARDED fast path, compiled: PT2E int8 linears (oneDNN's quantised linear)
    ort-fp32          ONNX Runtime (pip install '.[bench]' in a checkout): the same HF model exported to ONNX, fused by
                      onnxruntime.transformers' BERT optimizer (attention, layernorm, GELU), float32
    ort-int8          that optimised model with dynamic int8 quantisation (onnxruntime.quantization)

A compiled variant compiles at load (minutes the first time) into the weight cache ($BERTL11_CACHE), and loads
from there afterwards; where it cannot compile, it runs eager and its load line says why.

--breakdown adds runs per variant and batch that say where the time went: for bertl11's variants the seconds of
each oneDNN primitive (kind and shape, from oneDNN's verbose exec lines; the GEMMs are oneDNN's) and what ran outside
oneDNN, then torch's profiler's busiest ops (an eager variant's aten ops; a compiled variant's extern kernels, such as
the attention, and inductor's fused kernels only where it was compiled with TORCHINDUCTOR_CPP_ENABLE_KERNEL_PROFILE=1
into a fresh cache: otherwise the profiler sees nothing inside it); for ONNX Runtime's, the seconds of each node type
from its profiler, run in a second session so that the timed one never profiles.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

from bertl11 import QAModel, compiled, machine, resolve_model
from bertl11.compare import pcc
from bertl11.perf import hf_dtypes, hf_logits, synthetic_inputs, utilisation
from bertl11.profile import model_flops

VARIANTS = {
    # name: (config, fast, what the fast path does about its compiled forward: `compiled.POLICIES`)
    "simulated-bf16": ("BFLOAT16-DRAM", False, compiled.NEVER),
    "fast-bf16": ("BFLOAT16-DRAM", True, compiled.NEVER),
    "fast-fp32": ("FLOAT32", True, compiled.NEVER),
    "fast-int8": ("BFLOAT8_B-SHARDED", True, compiled.NEVER),
    "compiled-bf16": ("BFLOAT16-DRAM", True, compiled.BUILD),
    "compiled-fp32": ("FLOAT32", True, compiled.BUILD),
    "compiled-int8": ("BFLOAT8_B-SHARDED", True, compiled.BUILD),
}
ONNX_VARIANTS = ("ort-fp32", "ort-int8")
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
HF_NAMES = {torch.float32: "hf-fp32", torch.bfloat16: "hf-bf16"}


class LogitsOf(torch.nn.Module):
    """HF's QA model as a function of the three id tensors, returning (start, end): what ONNX export traces."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids, token_type_ids, attention_mask):
        out = self.hf(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return out.start_logits, out.end_logits


def export_onnx(hf32, shape, example, directory: Path) -> dict[str, Path]:
    """The HF model as ONNX files: optimised float32 and its dynamic int8 quantisation."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    hf = copy.deepcopy(hf32).eval()
    hf.set_attn_implementation("eager")  # the attention pattern the BERT optimizer fuses
    exported, optimised, quantised = directory / "hf.onnx", directory / "ort-fp32.onnx", directory / "ort-int8.onnx"
    axes = {name: {0: "batch", 1: "seq"} for name in (*INPUT_NAMES, "start_logits", "end_logits")}
    torch.onnx.export(LogitsOf(hf).eval(), example, str(exported), input_names=list(INPUT_NAMES),
                      output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    optimize_model(str(exported), model_type="bert", num_heads=shape.num_heads,
                   hidden_size=shape.hidden_size).save_model_to_file(str(optimised), use_external_data_format=True)
    quantize_dynamic(str(optimised), str(quantised), weight_type=QuantType.QInt8, use_external_data_format=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"ort-fp32": optimised, "ort-int8": quantised}


def onnx_runners(hf32, shape, example, threads: int, directory: Path, profile: bool = False) -> dict:
    """name -> run(input_ids, token_type_ids, attention_mask) -> (start, end) float32 tensors, per ORT variant.
    With `profile`, each run also has `run.profiled`: the same model in a second session that records its node times
    (read by `ort_breakdown`), so that the timed session never pays for profiling."""
    import onnxruntime

    def runner(path: Path, profile_prefix: str | None):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(*inputs):
            feed = {name: np.ascontiguousarray(t.numpy()) for name, t in zip(INPUT_NAMES, inputs)}
            start, end = session.run(None, feed)
            return torch.from_numpy(start), torch.from_numpy(end)

        run.session = session
        return run

    runners = {}
    for name, path in export_onnx(hf32, shape, example, directory).items():
        runners[name] = runner(path, None)
        if profile:
            runners[name].profiled = runner(path, str(directory / name))
    return runners


def seconds_of(run, inputs) -> float:
    """Wall seconds of one run(*inputs)."""
    started = time.perf_counter()
    run(*inputs)
    return time.perf_counter() - started


@contextlib.contextmanager
def stdout_to(file):
    """Everything written to file descriptor 1 (oneDNN's verbose lines come from C) goes to `file`."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(file.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def onednn_breakdown(run, inputs) -> tuple[float, collections.Counter]:
    """One run's wall seconds and the seconds of each oneDNN primitive it executed, by (kind, shape)."""
    seconds = collections.Counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        with stdout_to(log), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            wall = seconds_of(run, inputs)
        log.seek(0)
        for line in log:  # onednn_verbose,[timestamp,]primitive,exec,cpu,KIND,IMPL,...,SHAPE,MILLISECONDS
            fields = line.strip().split(",")
            if fields[0] == "onednn_verbose" and "exec" in fields:
                kind = fields[fields.index("exec") + 2]
                seconds[kind, fields[-2]] += float(fields[-1]) / 1e3
    return wall, seconds


def ort_breakdown(run, inputs) -> tuple[float, collections.Counter]:
    """One run of `run.profiled` (`onnx_runners(..., profile=True)`) after an untimed one: its wall seconds and the
    seconds of each ONNX node type in it, from the session's profiler."""
    run = run.profiled
    run(*inputs)  # the session's first run also allocates and plans
    wall = seconds_of(run, inputs)
    events = json.loads(Path(run.session.end_profiling()).read_text())
    last = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"][-1]
    seconds = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and last["ts"] <= e["ts"] <= last["ts"] + last["dur"]:
            seconds[e["args"]["op_name"], ""] += e["dur"] / 1e6
    return wall, seconds


def profiler_breakdown(run, inputs) -> tuple[float, collections.Counter]:
    """One run's wall seconds and the self CPU seconds of each op torch's profiler records in it."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        wall = seconds_of(run, inputs)
    seconds = collections.Counter()
    for event in profiler.key_averages():
        seconds[event.key, f"x{event.count}"] += event.self_cpu_time_total / 1e6
    return wall, seconds


def print_breakdown(name: str, batch: int, wall: float, seconds: collections.Counter, outside: str) -> None:
    print(f"{name}, batch {batch}: {wall:.3f} s; {outside} {wall - sum(seconds.values()):.3f} s")
    for (kind, shape), s in seconds.most_common(10):
        print(f"    {s:8.3f} s  {kind} {shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large-random")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=[*VARIANTS, *ONNX_VARIANTS], default=[*VARIANTS, *ONNX_VARIANTS])
    parser.add_argument("--breakdown", action="store_true", help="one more run per variant: where its time went")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch and ONNX Runtime CPU threads (default %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    source = resolve_model(args.model)
    found = machine.probe()
    print(f"{source.name}, seq {args.seq}, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU "
          f"{found.capability} ({found.flags_text()}), load average {os.getloadavg()[0]:.2f}")
    print(f"  probed peaks, one thread: {', '.join(found.rate_text(k) for k in found.rates)}; fast path: "
          f"{found.forward().kernel} forward ({found.forward().reason})")
    hf32 = source.hf_model()
    inputs = {b: synthetic_inputs(source.shape.vocab_size, b, args.seq) for b in args.batches}
    reference = {b: hf_logits(hf32, x) for b, x in inputs.items()}  # float32 HF, for PCC
    dtypes, skipped = hf_dtypes("cpu")
    references = {}
    for dtype in dtypes:
        hf = hf32 if dtype == torch.float32 else copy.deepcopy(hf32).to(dtype)
        references[HF_NAMES[dtype]] = lambda *x, hf=hf: hf_logits(hf, x)
    if skipped:
        print(f"  hf-bf16 {skipped}")

    runners, models, first_runs, agreement = {}, {}, {}, {}
    onnx_wanted = [name for name in args.variants if name in ONNX_VARIANTS]
    with tempfile.TemporaryDirectory(prefix="bertl11-onnx-") as directory:
        if onnx_wanted:
            started = time.perf_counter()
            exported = onnx_runners(hf32, source.shape, inputs[args.batches[0]], args.threads, Path(directory),
                                    profile=args.breakdown)
            runners |= {name: exported[name] for name in onnx_wanted}
            print(f"  exported, optimised and quantised ONNX in {time.perf_counter() - started:.1f} s", flush=True)
        for name in args.variants:
            if name in ONNX_VARIANTS:
                continue
            config, fast, policy = VARIANTS[name]
            started = time.perf_counter()
            model = QAModel.load(source, config, fast=fast, compile=policy)
            load = time.perf_counter() - started
            runners[name] = models[name] = model
            print(f"  loaded {name} in {load:.1f} s ({model.load_report.detail}): {model.ops.kernel()}", flush=True)
        for name, run in runners.items():
            for b, x in inputs.items():
                started = time.perf_counter()
                start, end = run(*x)
                first_runs[name, b] = time.perf_counter() - started
                agreement[name, b] = min(pcc(start, reference[b][0]), pcc(end, reference[b][1]))

        times: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.rounds):
            for b, x in inputs.items():
                for name, run in [*references.items(), *runners.items()]:
                    times.setdefault((name, b), []).append(seconds_of(run, x))
            print(f"  round {round_ + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)

        if args.breakdown:  # ORT's profile is read once, at its end: only the last batch's run is shown
            print("\nwhere the time went (one more run each):")
            for name, run in runners.items():
                if name in ONNX_VARIANTS:
                    wall, seconds = ort_breakdown(run, inputs[args.batches[-1]])
                    print_breakdown(name, args.batches[-1], wall, seconds, "outside the nodes")
                    continue
                for b, x in inputs.items():
                    wall, seconds = onednn_breakdown(run, x)
                    print_breakdown(name, b, wall, seconds, "outside oneDNN")
                    wall, seconds = profiler_breakdown(run, x)
                    print_breakdown(name, b, wall, seconds, "not recorded by torch's profiler")

    def ratio(reference_name, name, b):
        return median(r / o for r, o in zip(times[reference_name, b], times[name, b]))

    print(f"\n{'variant':<20}{'batch':>6}{'inf/s':>9}{'x HF fp32':>11}{'x HF bf16':>11}{'x HF':>7}{'x ORT':>7}"
          f"{'GOP/s':>8}{'% peak':>8}{'PCC vs HF fp32':>16}{'first run s':>13}")
    for b in args.batches:
        hf_best = min(references, key=lambda name: median(times[name, b]))
        onnx_names = [name for name in runners if name in ONNX_VARIANTS]
        ort_best = min(onnx_names, key=lambda name: median(times[name, b])) if onnx_names else None
        for name in [*references, *runners]:
            cells = [f"{ratio(ref, name, b):>11.2f}" if ref in references else f"{'-':>11}" for ref in ("hf-fp32", "hf-bf16")]
            cells.append(f"{ratio(hf_best, name, b):>7.2f}")
            cells.append(f"{ratio(ort_best, name, b):>7.2f}" if ort_best else f"{'-':>7}")
            seconds = median(times[name, b])
            used = utilisation(models[name], b, args.seq, seconds) if name in models else {}
            cells.append(f"{model_flops(source.shape, b, args.seq) / seconds / 1e9:>8.1f}")
            cells.append(f"{used['Utilisation (%)']:>8.1f}" if "Utilisation (%)" in used else f"{'-':>8}")
            tail = f"{agreement[name, b]:>16.5f}{first_runs[name, b]:>13.1f}" if name in runners else ""
            print(f"{name:<20}{b:>6}{b / median(times[name, b]):>9.3f}{''.join(cells)}{tail}")
        print(f"(batch {b}: x HF against {hf_best}" + (f", x ORT against {ort_best})" if ort_best else ")"))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
