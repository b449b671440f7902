"""BERT-large bfloat16 on one GPU, padded to 384: bertl11 vs HF transformers eager, same process.

    python benchmarks/gpu_benchmark.py                                   # batch 64, 128, 256 on cuda
    python benchmarks/gpu_benchmark.py --device cpu --model tiny --batches 2 --iterations 2   # smoke run

Sides, each timed interleaved with the others iteration by iteration, logits copied back to the host:
    hf-bf16         HF BertForQuestionAnswering eager (its default SDPA attention), bfloat16
    bertl11         BFLOAT16-DRAM fast path: bf16 cuBLAS linears, SDPA with the padding mask
    bertl11-graphs  the same under torch.compile(mode="reduce-overhead"): fused epilogues, CUDA graphs
Achieved TFLOP/s counts matmul FLOPs per inference (layers x (24*s*d^2 + 4*s^2*d) + QA head); the share
is of --peak-tflops (790: an assumed H200 bf16 dense matmul rate, not measured; docs/sources.md section 5).

Not run on a real GPU yet.
"""

from __future__ import annotations

import argparse
import time
from statistics import median

import torch

from bertl11 import QAModel, resolve_model
from bertl11.compare import pcc
from bertl11.perf import compiled, hf_logits, synthetic_inputs


def flops_per_inference(shape, seq: int) -> int:
    d, layers = shape.hidden_size, shape.num_layers
    return layers * (24 * seq * d * d + 4 * seq * seq * d) + 2 * seq * d * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large-random")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=790.0)
    args = parser.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible to torch")
        print(torch.cuda.get_device_name(), f"torch {torch.__version__}")

    source = resolve_model(args.model)
    hf = source.hf_model().to(args.device)
    inputs = {b: synthetic_inputs(source.shape.vocab_size, b, args.seq) for b in args.batches}
    reference = {b: hf_logits(hf, x) for b, x in inputs.items()}  # float32 HF on the same device
    hf = hf.to(torch.bfloat16)
    model = QAModel.load(source, "BFLOAT16-DRAM", args.device, fast=True)
    sides = {"hf-bf16": lambda *x: hf_logits(hf, x), "bertl11": model, "bertl11-graphs": compiled(model, args.device)}

    first, agreement = {}, {}
    for name, run in sides.items():
        for b, x in inputs.items():
            started = time.perf_counter()
            out = run(*x)
            first[name, b] = time.perf_counter() - started
            out = torch.stack(list(out))
            agreement[name, b] = min(pcc(out[0], reference[b][0]), pcc(out[1], reference[b][1]))
            if name == "bertl11-graphs":  # cudagraph trees record on the second call, replay from the third
                run(*x)
        print(f"  first runs of {name}: " + ", ".join(f"batch {b} {first[name, b]:.1f} s" for b in args.batches), flush=True)

    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.iterations):
        for b, x in inputs.items():
            for name, run in sides.items():
                started = time.perf_counter()
                run(*x)  # returns host tensors: the device has finished
                times.setdefault((name, b), []).append(time.perf_counter() - started)

    flops = flops_per_inference(source.shape, args.seq)
    print(f"\n{source.name}, seq {args.seq}, {flops / 1e9:.1f} GFLOP per inference")
    print(f"{'side':<16}{'batch':>6}{'inf/s':>10}{'x HF':>7}{'TFLOP/s':>9}{'% of peak':>11}{'PCC vs fp32':>13}{'first s':>9}")
    for b in args.batches:
        hf_times = times["hf-bf16", b]
        for name in sides:
            rate = b / median(times[name, b])
            ratio = median(h / o for h, o in zip(hf_times, times[name, b]))
            tflops = rate * flops / 1e12
            print(f"{name:<16}{b:>6}{rate:>10.1f}{ratio:>7.2f}{tflops:>9.1f}{100 * tflops / args.peak_tflops:>10.1f}%"
                  f"{agreement[name, b]:>13.5f}{first[name, b]:>9.1f}")


if __name__ == "__main__":
    main()
