"""The simulation (`TorchOps`) of every run configuration against its FLOAT32 run, same process, interleaved.

    python benchmarks/simulation_benchmark.py                   # minilm, batch 4 x seq 384, one thread
    python benchmarks/simulation_benchmark.py --modes float32   # only the float32 compute mode
    python benchmarks/simulation_benchmark.py --clock cpu       # CPU time: steadier on a shared machine
    python benchmarks/simulation_benchmark.py --arithmetic seed HiFi2 HiFi4 exact   # the card's arithmetic, per mode

Each simulated config rounds every op output through its storage dtypes (BFLOAT16, BFLOAT8_B) and computes the
card's arithmetic (`bertl11/fpu.py`); the FLOAT32 config does neither, so `x FLOAT32` is what the simulation costs.
`--arithmetic` picks how: the seed's compute settings ("seed"), every matmul at one fidelity ("LoFi" ... "HiFi4",
--math-fidelity), or the seed's with exact accumulation ("exact", --exact-accumulation). Each config runs in each
compute mode `--modes` names (forced through BERTL11_GEMM_DTYPE, see `bertl11.machine`): bfloat16 GEMMs, or
float32 GEMMs on the bfloat16-rounded values (what a CPU without native bfloat16 runs). A mode this machine has no
fast kernel for is skipped unless named explicitly. `PCC vs FLOAT32` compares each run's logits with FLOAT32's,
`PCC vs bf16` the two compute modes'. Every round runs each (config, arithmetic, mode) once, so all see the same
machine load; times are medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import time
from statistics import median

import torch

from bertl11 import RUN_CONFIGS, QAModel, machine, resolve_model
from bertl11.config import MATH_FIDELITIES
from bertl11.compare import pcc
from bertl11.perf import synthetic_inputs

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
SEED, EXACT = "seed", "exact"
ARITHMETIC = (SEED, *MATH_FIDELITIES, EXACT)


def load(source, config: str, arithmetic: str) -> QAModel:
    """The simulation of `config` with `arithmetic` (FLOAT32 has only its exact one)."""
    if config == "FLOAT32":
        return QAModel.load(source, config)
    fidelity = arithmetic if arithmetic in MATH_FIDELITIES else None
    return QAModel.load(source, config, math_fidelity=fidelity, exact_accumulation=arithmetic == EXACT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", choices=list(RUN_CONFIGS), default=list(RUN_CONFIGS))
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or the process's CPU time: what a run costs when other jobs share the cores")
    parser.add_argument("--modes", nargs="+", choices=machine.GEMM_DTYPES, default=None,
                        help="compute modes to run (default: float32, and bfloat16 where it is native)")
    parser.add_argument("--arithmetic", nargs="+", choices=ARITHMETIC, default=[SEED],
                        help="the card's arithmetic to simulate: the seed's settings, a fidelity for every matmul, or the "
                             "seed's with exact accumulation (default %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    probe = machine.probe()
    modes = args.modes or [m for m in machine.GEMM_DTYPES if m == "float32" or probe.rates[m] >= probe.rates["float32"]]

    source = resolve_model(args.model)
    inputs = synthetic_inputs(source.shape.vocab_size, args.batch, args.seq)
    print(f"{source.name}, batch {args.batch} x seq {args.seq}, torch {torch.__version__}, CPU {probe.capability} "
          f"({probe.flags_text()}), {torch.get_num_threads()} threads, {args.clock} clock, load average {os.getloadavg()[0]:.2f}")
    configs = ["FLOAT32", *(c for c in args.configs if c != "FLOAT32")]
    models, outputs = {}, {}
    for config in configs:
        for arithmetic in args.arithmetic if config != "FLOAT32" else [SEED]:
            for mode in modes if config != "FLOAT32" else ["float32"]:
                os.environ[machine.GEMM_DTYPE_VARIABLE] = mode
                models[config, arithmetic, mode] = model = load(source, config, arithmetic)
                outputs[config, arithmetic, mode] = torch.stack(model(*inputs))  # the first run, untimed
    os.environ.pop(machine.GEMM_DTYPE_VARIABLE)

    times: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for key, model in models.items():
            started = clock()
            model(*inputs)
            times.setdefault(key, []).append(clock() - started)
        print(f"  round {round_ + 1}/{args.rounds}, load average {os.getloadavg()[0]:.2f}", flush=True)

    baseline, reference = median(times["FLOAT32", SEED, "float32"]), outputs["FLOAT32", SEED, "float32"]
    print(f"\n{'config':<24}{'arithmetic':<12}{'compute':<10}{'s':>8}{'x FLOAT32':>11}{'PCC vs FLOAT32':>16}{'PCC vs bf16':>13}")
    for (config, arithmetic, mode), runs in times.items():
        versus = outputs.get((config, arithmetic, "bfloat16"))
        agreement = f"{pcc(outputs[config, arithmetic, mode], versus):>13.6f}" if versus is not None and mode != "bfloat16" else ""
        print(f"{config:<24}{arithmetic:<12}{mode:<10}{median(runs):>8.3f}{median(runs) / baseline:>11.2f}"
              f"{pcc(outputs[config, arithmetic, mode], reference):>16.6f}{agreement}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
