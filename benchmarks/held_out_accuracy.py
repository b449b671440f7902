"""What each numerics configuration costs in accuracy: official SQuAD v2 scores on the held-out articles.

    python benchmarks/held_out_accuracy.py                          # minilm-squad2, all 4,389 held-out questions
    python benchmarks/held_out_accuracy.py --sample 300 --record    # the seeded slice the tests check, recorded
    python benchmarks/held_out_accuracy.py --configs "BFLOAT8_B-SHARDED HiFi4" "BFLOAT8_B-SHARDED exact"

Every configuration answers the same questions of the 12 held-out articles (never trained on) with the
model's shipped null-score threshold. A row names a run config, then optionally a math fidelity for every
matmul (--math-fidelity; without one, the seed's), "exact" (--exact-accumulation) or "--fast". Prints one
markdown table (EM, F1, HasAns F1, NoAns exact, best F1 and its threshold, features/s) and, with --record, adds
the rows to the shipped model's scores.json (rows measured before stay), which the accuracy tests compare
against and notebook 03 plots.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bertl11 import QAModel, compiled
from bertl11.config import MATH_FIDELITIES
from bertl11.files import exclusive_lock, write_json
from bertl11.packaged import SHIPPED_DIRECTORY
from bertl11.squad.data import load_squad
from bertl11.squad.run import run_squad

CARD_CONFIGS = ("BFLOAT16-DRAM", "BFLOAT8_B-SHARDED", "MIXED_PRECISION_BATCH8")
# The seed's settings, then every matmul at LoFi, HiFi2 and HiFi4 (BFLOAT8_B-SHARDED's seed settings are all LoFi).
CONFIGS = ("FLOAT32", *(f"{config}{suffix}" for config in CARD_CONFIGS
                        for suffix in ("", *(f" {f}" for f in ("LoFi", "HiFi2", "HiFi4") if (config, f) != ("BFLOAT8_B-SHARDED", "LoFi")))),
           "BFLOAT8_B-SHARDED exact")
# The fast path as `bertl11 squad --fast` runs it (compiled where this machine compiles): exact, and int8.
FAST = ("FLOAT32 --fast", "BFLOAT8_B-SHARDED --fast")
SCORES_FILE = SHIPPED_DIRECTORY / "scores.json"
COLUMNS = ("exact", "f1", "HasAns_f1", "NoAns_exact", "best_f1", "best_f1_thresh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-squad2")
    parser.add_argument("--data", default="data/squad/dev-v2.0.json")
    parser.add_argument("--sample", type=int, help="a seeded slice of the held-out questions instead of all of them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--configs", nargs="+", default=[*CONFIGS, *FAST])
    parser.add_argument("--record", action="store_true", help=f"write the scores to {SCORES_FILE.name} beside the shipped model")
    args = parser.parse_args()

    dataset = load_squad(args.data, split="held-out", sample=args.sample, seed=args.seed)
    rows = {}
    for name in args.configs:
        config, *modifiers = name.split()
        fast = "--fast" in modifiers
        fidelity = next((m for m in modifiers if m in MATH_FIDELITIES), None)
        model = QAModel.load(args.model, config=config, fast=fast, math_fidelity=fidelity,
                             exact_accumulation="exact" in modifiers, compile=compiled.BUILD)
        if fast:
            print(f"{name}: {model.ops.kernel()}", flush=True)
        result = run_squad(model, dataset, args.batch, progress=True)
        rows[name] = {**{k: result.scores[k] for k in COLUMNS}, "features_per_s": result.features_per_second}

    print(f"\n{args.model}, {len(dataset)} held-out questions"
          + (f" (sample of {args.sample}, seed {args.seed})" if args.sample else "") + "\n")
    print("| config | EM | F1 | HasAns F1 | NoAns exact | best F1 | best threshold | features/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['exact']:.2f} | {row['f1']:.2f} | {row['HasAns_f1']:.2f} | {row['NoAns_exact']:.2f} | "
              f"{row['best_f1']:.2f} | {row['best_f1_thresh']:.3f} | {row['features_per_s']:.1f} |")

    if args.record:  # one writer at a time: rows measured in parallel processes all land
        with exclusive_lock(Path(tempfile.gettempdir()) / "bertl11-held-out-scores.lock", "another run recording scores", wait=True):
            recorded = json.loads(SCORES_FILE.read_text()) if SCORES_FILE.is_file() else {}
            key = f"sample-{args.sample}-seed-{args.seed}" if args.sample else "all"
            recorded.setdefault(key, {"questions": len(dataset), "scores": {}})["scores"].update(rows)
            write_json(SCORES_FILE, recorded)
        print(f"\nrecorded as {key!r} in {SCORES_FILE}")


if __name__ == "__main__":
    main()
