"""Real-data throughput: SQuAD v2 dev features, bertl11 bucketed vs HF padded to 384, same process.

    python benchmarks/squad_benchmark.py                       # first 512 features, large-random, batch 8
    python benchmarks/squad_benchmark.py --features 64 --model large-random-2
    python benchmarks/squad_benchmark.py --ranks 2 --features 128   # 1 process against torchrun with 2 ranks

The features (token windows, HF pipeline rules: max 384, stride 128) of the first dev questions are run
twice: by HF transformers eager in bfloat16 with every batch padded to 384 (what a static-shape device
runs), and by bertl11's fast path with length bucketing (each batch padded to its longest window, rounded up
to 32). The two sides alternate batch by batch so both see the same machine load. Prints features/s,
the ratio, and the PCC of our per-window logits against HF's on the same windows.

--against ort instead runs the first --questions dev questions end to end through bertl11's one pipeline
(`squad.run.run_squad`: tokenisation, length-bucketed batches, the model, post-processing, the official scoring)
three ways, alternating round by round: bertl11's fast path (compiled where this machine compiles, as `bertl11
squad` runs it) and ONNX Runtime fp32 and dynamic int8 on the same HF model (benchmarks/perf_benchmark.py's
export), each behind the interface the pipeline calls. So both sides count the same tokenisation and
post-processing on the same windows. Prints, per side, features/s in the model, questions/s end to end, the
seconds of each stage, EM and F1 (meaningful for a trained model: minilm-squad2, or a hub checkpoint) and the
ratio to ORT's faster variant.

    python benchmarks/squad_benchmark.py --against ort --model minilm-squad2 --questions 500

--ranks N instead runs `bertl11 squad --fast` over the first --features dev questions twice, as one process
(--threads, default all cores) and under `torchrun --nproc-per-node N` (--threads / N per rank), and prints each one's
features/s in the model (rank 0's clock: every rank's share, the wait for the slowest and the gather), the
scaling ratio, and whether the two predictions.json are the same bytes. On one machine the ranks share its
cores, so expect about 1x there (or less on 2 cores); ranks pay off with a device, or a host, each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bertl11 import QAModel, compiled, resolve_model
from bertl11.compare import pcc
from bertl11.perf import hf_logits, synthetic_inputs
from bertl11.squad.data import load_squad
from bertl11.squad.preprocess import bucketed_batches, encode, static_batches
from bertl11.squad.run import run_squad


def first_windows(tokenizer, count: int, data: str):
    """The first `count` windows of the dev set, questions in data order."""
    windows, questions = [], 0
    dataset = load_squad(data)
    while len(windows) < count and questions < len(dataset):
        chunk = dataset[questions:questions + 64]
        windows += encode(tokenizer, chunk["question"], chunk["context"])
        questions += len(chunk["question"])
    return windows[:count]


def trimmed(batch, start, end) -> dict[int, torch.Tensor]:
    """window index -> [2, length] logits of its real tokens."""
    lengths = batch.attention_mask.sum(dim=1).tolist()
    return {w: torch.stack([start[row, :lengths[row]], end[row, :lengths[row]]]) for row, w in enumerate(batch.windows)}


def squad_run(launcher: list[str], args, out: Path, threads: int) -> float:
    """features/s in the model of one `bertl11 squad` run, started with `launcher`."""
    command = [*launcher, "-m", "bertl11", "squad", "--model", args.model, "--config", args.config, "--data", args.data,
               "--limit", str(args.features), "--batch", str(args.batch), "--threads", str(threads), "--fast", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return float(re.search(r"throughput: ([0-9.]+) features/s", done.stdout).group(1))


def scaling(args) -> None:
    cores = args.threads  # the single process's threads; the ranks share them out
    per_rank = max(1, cores // args.ranks)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", str(args.ranks)]
    with tempfile.TemporaryDirectory() as scratch:
        one, many = Path(scratch, "one"), Path(scratch, "many")
        squad_run([sys.executable], args, one, cores)  # untimed: fills the weight cache, warms the file cache
        alone = squad_run([sys.executable], args, one, cores)
        ranks = squad_run(torchrun, args, many, per_rank)
        same = (one / "predictions.json").read_bytes() == (many / "predictions.json").read_bytes()
    print(f"{args.model} {args.config}, first {args.features} dev questions, batch {args.batch}, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}, "
          f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"1 process, {cores} threads:            {alone:8.2f} features/s")
    print(f"{args.ranks} ranks (torchrun), {per_rank} thread(s) each: {ranks:8.2f} features/s")
    print(f"scaling: {ranks / alone:.2f}x with {args.ranks} ranks; predictions.json {'identical' if same else 'DIFFERENT'}")


class OnnxModel:
    """An ONNX Runtime session behind what the pipeline calls on a `QAModel`: the same source (tokenizer, shape,
    shipped null-score threshold), device, and (ids, types, mask) -> (start, end) float32 CPU logits."""

    def __init__(self, source, run):
        self.source, self.run, self.device = source, run, "cpu"
        self.shape, self.tokenizer = source.shape, source.tokenizer

    def __call__(self, input_ids, token_type_ids, attention_mask):
        return self.run(input_ids, token_type_ids, attention_mask)


def against_ort(args) -> None:
    from perf_benchmark import onnx_runners  # the same directory: run as python benchmarks/squad_benchmark.py

    torch.set_num_threads(args.threads)
    source = resolve_model(args.model)
    dataset = load_squad(args.data, args.questions)
    started = time.perf_counter()
    ours = QAModel.load(source, args.config, fast=True, compile=compiled.BUILD)
    print(f"loaded bertl11 in {time.perf_counter() - started:.1f} s ({ours.load_report.detail}): {ours.ops.kernel()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bertl11-onnx-") as directory:
        example = synthetic_inputs(source.shape.vocab_size, 2, 64)  # the export's batch and sequence axes are dynamic
        onnx = onnx_runners(source.hf_model(), source.shape, example, args.threads, Path(directory))
        sides = {f"bertl11 fast ({args.config})": ours, **{name: OnnxModel(source, run) for name, run in onnx.items()}}
        for model in sides.values():  # untimed: first calls pay for kernel creation at each bucket's shape
            run_squad(model, dataset, args.batch)
        runs = {name: [] for name in sides}
        for round_ in range(args.rounds):
            for name, model in sides.items():
                runs[name].append(run_squad(model, dataset, args.batch))
            print(f"  round {round_ + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    def best(name):
        return min(runs[name], key=lambda run: sum(run.seconds.values()))

    ort_best = min(onnx, key=lambda name: sum(best(name).seconds.values()))
    print(f"\n{source.name}, first {len(dataset)} dev questions, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f}; "
          f"best of {args.rounds} rounds")
    print(f"{'side':<34}{'windows':>8}{'features/s':>12}{'questions/s':>13}{'preprocess s':>14}{'model s':>9}"
          f"{'postprocess s':>15}{'EM':>7}{'F1':>7}{'x ' + ort_best:>13}")
    for name in sides:
        run = best(name)
        total = sum(run.seconds.values())
        ratio = sum(best(ort_best).seconds.values()) / total
        print(f"{name:<34}{run.windows:>8}{run.features_per_second:>12.2f}{len(run.ids) / total:>13.2f}"
              f"{run.seconds['preprocess']:>14.2f}{run.seconds['model']:>9.2f}{run.seconds['postprocess']:>15.2f}"
              f"{run.scores['exact']:>7.2f}{run.scores['f1']:>7.2f}{ratio:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large-random")
    parser.add_argument("--config", default="BFLOAT8_B-SHARDED")
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--data", default="data/squad/dev-v2.0.json")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default %(default)s); 1 keeps a core another job holds out of every GEMM")
    parser.add_argument("--ranks", type=int, default=None,
                        help="instead: features/s of `bertl11 squad` as 1 process and as N torchrun ranks, and the ratio")
    parser.add_argument("--against", choices=("ort",), default=None,
                        help="instead: bertl11's fast path against ONNX Runtime through the same pipeline, end to end")
    parser.add_argument("--questions", type=int, default=500, help="with --against: the first N dev questions")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: timed passes per side, alternating")
    args = parser.parse_args()
    if args.against == "ort":
        return against_ort(args)
    if args.ranks is not None:
        if args.ranks < 2:
            parser.error("--ranks must be at least 2")
        return scaling(args)
    torch.set_num_threads(args.threads)

    source = resolve_model(args.model)
    windows = first_windows(source.tokenizer, args.features, args.data)
    lengths = torch.tensor([len(w) for w in windows], dtype=torch.float)
    padded = static_batches(windows, args.batch, 384, source.shape.pad_token_id)
    bucketed = bucketed_batches(windows, args.batch, pad_id=source.shape.pad_token_id)
    real = float(lengths.sum())
    print(f"{source.name} {args.config}, {torch.get_num_threads()} threads, {len(windows)} features, mean length {lengths.mean():.0f} tokens, batch {args.batch}; "
          f"tokens computed: padded {len(padded) * args.batch * 384}, bucketed "
          f"{sum(b.input_ids.numel() for b in bucketed)} (real {real:.0f})", flush=True)

    hf = source.hf_model().to(torch.bfloat16)
    model = QAModel.load(source, args.config, fast=True)
    # One untimed run each: first calls pay for lazy setup (oneDNN kernel generation, allocator growth).
    model(bucketed[-1].input_ids, bucketed[-1].token_type_ids, bucketed[-1].attention_mask)
    hf_logits(hf, (padded[0].input_ids, padded[0].token_type_ids, padded[0].attention_mask))

    seconds = {"hf": 0.0, "ours": 0.0}
    logits = {"hf": {}, "ours": {}}
    for i in range(max(len(padded), len(bucketed))):
        for side, batches in (("hf", padded), ("ours", bucketed)):
            if i >= len(batches):
                continue
            batch = batches[i]
            started = time.perf_counter()
            if side == "hf":
                start, end = hf_logits(hf, (batch.input_ids, batch.token_type_ids, batch.attention_mask))
            else:
                start, end = model(batch.input_ids, batch.token_type_ids, batch.attention_mask)
            seconds[side] += time.perf_counter() - started
            logits[side].update(trimmed(batch, start, end))
        if (i + 1) % 8 == 0:
            print(f"  {i + 1}/{len(padded)} batches: HF {seconds['hf']:.0f} s, bertl11 {seconds['ours']:.0f} s, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)

    order = sorted(logits["hf"])
    agreement = pcc(torch.cat([logits["ours"][w].flatten() for w in order]), torch.cat([logits["hf"][w].flatten() for w in order]))
    hf_rate, our_rate = len(windows) / seconds["hf"], len(windows) / seconds["ours"]
    print(f"\nHF eager bfloat16, padded to 384:      {hf_rate:7.2f} features/s ({seconds['hf']:.1f} s)")
    print(f"bertl11 fast, bucketed (multiple of 32): {our_rate:7.2f} features/s ({seconds['ours']:.1f} s)")
    print(f"ratio: {our_rate / hf_rate:.2f}x; PCC of bertl11 logits vs HF bfloat16 on the same windows: {agreement:.5f}")


if __name__ == "__main__":
    main()
