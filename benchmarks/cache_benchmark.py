"""Weight cache: converting from the source vs loading the cache, and the cache's size, per run config.

    python benchmarks/cache_benchmark.py [--model large-random] [--configs BFLOAT16-DRAM BFLOAT8_B-SHARDED]

convert  state dict from the source (for large-random: seeded random init) + import (QKV fusion, transposes)
         + rounding/packing to the config's dtypes + sha256 + writing the files
load     reading the files + sha256 verification + unpacking to model-layout tensors (the source untouched)
Each step runs --repeat times (default 2) and the fastest run is reported.
new processes  convert and load again, each timed in a fresh Python process after `import bertl11`, as
         `bertl11 convert` and `bertl11 demo` meet them: every page of memory is new there (later runs in one
         process reuse freed memory, and on virtual machines new pages are dear), and a conversion includes
         importing transformers' BERT code for the source (about 2.3 s on the 2-core machine)
QAModel  QAModel.load on a hit: the load above plus the torch backend's `prepare` (device placement and
         rounding to the compute dtype), which a miss pays as well
Caches go to a temporary directory unless --cache-dir is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter

from bertl11 import QAModel, get_run_config, resolve_model
from bertl11.cache import MANIFEST, STORAGE_DTYPES, cache_bytes, cache_directory, load, load_or_convert


def untouchable(source):
    def refuse():
        raise RuntimeError("a cache load read the source weights")

    return dataclasses.replace(source, _load_state_dict=refuse)


def tensor_bytes(directory) -> dict[str, tuple[str, int]]:
    """Stored dtype and bytes of every tensor, from the manifest (file headers excluded)."""
    tensors = json.loads((directory / MANIFEST).read_text())["tensors"]
    return {
        name: (t["dtype"], math.prod(t["stored_shape"]) * STORAGE_DTYPES[t["dtype"]].itemsize) for name, t in tensors.items()
    }


def bytes_by_dtype(tensors: dict[str, tuple[str, int]]) -> Counter:
    sizes = Counter()
    for dtype, size in tensors.values():
        sizes[dtype] += size
    return sizes


def best_of(repeat: int, action) -> tuple[float, object]:
    """The fastest of `repeat` runs (the machine is shared: the minimum is the least disturbed run)."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        timings.append(time.perf_counter() - started)
    return min(timings), result


IN_NEW_PROCESS = """
import sys, time
from bertl11 import get_run_config, resolve_model
from bertl11.cache import cache_directory, load, load_or_convert
step, source, run_config, cache_dir = sys.argv[1], resolve_model(sys.argv[2]), get_run_config(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
if step == "convert":
    load_or_convert(source, run_config, cache_dir, rebuild=True)
else:
    load(cache_directory(cache_dir, source, run_config), source, run_config)
print(time.perf_counter() - started)
"""


def in_new_process(step: str, source, config_name: str, cache_dir: str) -> float:
    """Seconds `step` ("convert" or "load") takes in a fresh Python process, after `import bertl11`."""
    command = [sys.executable, "-c", IN_NEW_PROCESS, step, source.name, config_name, cache_dir]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def measure(source, config_name: str, cache_dir: str, repeat: int) -> dict:
    run_config = get_run_config(config_name)
    directory = cache_directory(cache_dir, source, run_config)
    convert, _ = best_of(repeat, lambda: load_or_convert(source, run_config, cache_dir, rebuild=True)[1])
    load_seconds, _ = best_of(repeat, lambda: len(load(directory, untouchable(source), run_config)))
    fresh_convert = min(in_new_process("convert", source, config_name, cache_dir) for _ in range(repeat))
    fresh_load = min(in_new_process("load", source, config_name, cache_dir) for _ in range(repeat))
    models = [QAModel.load(untouchable(source), config_name, cache_dir=cache_dir) for _ in range(repeat)]
    assert all(model.load_report.cache_hit for model in models)
    return {
        "config": config_name,
        "convert": convert,
        "load": load_seconds,
        "fresh_convert": fresh_convert,
        "fresh_load": fresh_load,
        "qamodel": min(model.load_report.seconds for model in models),
        "bytes": cache_bytes(directory),
        "tensors": tensor_bytes(directory),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large-random")
    parser.add_argument("--configs", nargs="+", default=["BFLOAT16-DRAM", "BFLOAT8_B-SHARDED"])
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each step; the fastest is reported")
    args = parser.parse_args()
    source = resolve_model(args.model)
    with tempfile.TemporaryDirectory(prefix="bertl11-cache-benchmark-") as scratch:
        rows = [measure(source, name, args.cache_dir or scratch, args.repeat) for name in args.configs]
    print(f"\nweight cache, model {source.name} ({source.shape.num_layers} layers)")
    print(f"{'':<20} {'same process':^33} {'new processes':^33}")
    print(f"{'config':<20} {'convert s':>10} {'load s':>8} {'convert/load':>13} {'convert s':>10} {'load s':>8} {'convert/load':>13}"
          f" {'QAModel.load hit s':>19} {'size MiB':>9}")
    for row in rows:
        print(
            f"{row['config']:<20} {row['convert']:>10.2f} {row['load']:>8.2f} {row['convert'] / row['load']:>12.1f}x"
            f" {row['fresh_convert']:>10.2f} {row['fresh_load']:>8.2f} {row['fresh_convert'] / row['fresh_load']:>12.1f}x"
            f" {row['qamodel']:>19.2f} {row['bytes'] / 2**20:>9.1f}"
        )
    for row in rows[1:]:
        print(f"size {row['config']} / {rows[0]['config']}: {row['bytes'] / rows[0]['bytes']:.3f}x")
        # Tensors kept in the same dtype by both configs (embedding tables, layernorms) weigh the same in both.
        changed = [name for name, (dtype, _) in row["tensors"].items() if dtype != rows[0]["tensors"][name][0]]
        if changed:
            ours, theirs = (sum(r["tensors"][name][1] for name in changed) for r in (row, rows[0]))
            print(f"  the {len(changed)} tensors {row['config']} stores in another dtype: "
                  f"{ours / 2**20:.1f} MiB vs {theirs / 2**20:.1f} MiB, {ours / theirs:.3f}x")
    for row in rows:
        parts = ", ".join(f"{dtype} {size / 2**20:.1f} MiB" for dtype, size in sorted(bytes_by_dtype(row["tensors"]).items()))
        print(f"{row['config']}: {parts}")


if __name__ == "__main__":
    main()
