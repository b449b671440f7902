"""bertl11's torch paths against HF transformers eager, BERT-large at seq 384, same process, interleaved.

    python benchmarks/perf_benchmark.py                      # large-random, batch 1 and 4, all variants
    python benchmarks/perf_benchmark.py --variants fast-int8 --batches 1 --rounds 5

Every round runs each variant once per batch size, HF eager (bfloat16, the issue's yardstick, and float32,
which this CPU runs faster) first, so all see the same machine load; a speedup is the median over rounds of
(HF time / variant time) from the same round.
PCC is against HF in float32 on the same inputs (every position a real token, see `bertl11.perf`).

Variants (each one step of issue 7's list, so the table shows what each step buys):
    simulated-bf16    the 11-op simulation of BFLOAT16-DRAM (the parity-tested path)
    fast-bf16         BFLOAT16-DRAM fast path: no per-op rounding, SDPA for ops 3-5
    fast-fp32         FLOAT32 fast path: the same in float32
    fast-int8         BFLOAT8_B-SHARDED fast path: int8 VNNI encoder linears, float32 elsewhere
    fast-int8-compiled   the same under torch.compile (first-run compile time reported)
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from statistics import median

import torch

from bertl11 import QAModel, resolve_model
from bertl11.compare import pcc
from bertl11.perf import compiled, hf_logits, synthetic_inputs

VARIANTS = {
    # name: (config, fast, compile)
    "simulated-bf16": ("BFLOAT16-DRAM", False, False),
    "fast-bf16": ("BFLOAT16-DRAM", True, False),
    "fast-fp32": ("FLOAT32", True, False),
    "fast-int8": ("BFLOAT8_B-SHARDED", True, False),
    "fast-int8-compiled": ("BFLOAT8_B-SHARDED", True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large-random")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default %(default)s); 1 keeps a core another job holds out of every GEMM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    source = resolve_model(args.model)
    print(f"{source.name}, seq {args.seq}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    hf32 = source.hf_model()
    inputs = {b: synthetic_inputs(source.shape.vocab_size, b, args.seq) for b in args.batches}
    reference = {b: hf_logits(hf32, x) for b, x in inputs.items()}  # float32 HF, for PCC
    hf16 = copy.deepcopy(hf32).to(torch.bfloat16)
    references = {"hf-bf16": lambda *x: hf_logits(hf16, x), "hf-fp32": lambda *x: hf_logits(hf32, x)}

    runners, first_runs, agreement = {}, {}, {}
    for name in args.variants:
        config, fast, compile_ = VARIANTS[name]
        started = time.perf_counter()
        model = QAModel.load(source, config, fast=fast)
        load = time.perf_counter() - started
        runners[name] = compiled(model, "cpu") if compile_ else model
        for b, x in inputs.items():
            started = time.perf_counter()
            start, end = runners[name](*x)
            first_runs[name, b] = time.perf_counter() - started
            agreement[name, b] = min(pcc(start, reference[b][0]), pcc(end, reference[b][1]))
        print(f"  loaded {name} in {load:.1f} s (first runs: "
              + ", ".join(f"batch {b} {first_runs[name, b]:.1f} s" for b in args.batches) + ")", flush=True)

    times: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        for b, x in inputs.items():
            for name, run in [*references.items(), *runners.items()]:
                started = time.perf_counter()
                run(*x)
                times.setdefault((name, b), []).append(time.perf_counter() - started)
        print(f"  round {round_ + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    print(f"\n{'variant':<20}{'batch':>6}{'inf/s':>9}{'x HF bf16':>11}{'x HF fp32':>11}{'PCC vs HF fp32':>16}{'first run s':>13}")
    for b in args.batches:
        for name in [*references, *runners]:
            ours = times[name, b]
            ratios = [median(h / o for h, o in zip(times[ref, b], ours)) for ref in references]
            pcc_text = f"{agreement[name, b]:>16.5f}{first_runs[name, b]:>13.1f}" if name in runners else ""
            print(f"{name:<20}{b:>6}{b / median(ours):>9.3f}{ratios[0]:>11.2f}{ratios[1]:>11.2f}{pcc_text}")


if __name__ == "__main__":
    main()
