"""`bertl11 squad`: run a model over SQuAD v2, score it, and write what the official script reads.

    bertl11 squad --model tiny --data data/squad/dev-v2.0.json --limit 200

Writes predictions.json (id -> answer), na_probs.json (id -> na_prob) and eval.json to --out, and prints the
score, its HasAns/NoAns split, the best na_prob threshold and the throughput. Under torchrun
(`torchrun --nproc-per-node N -m bertl11 squad ...`) rank 0 writes and prints. Only one run at a time writes
to an --out: a second one is refused.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from ..distributed import Job, Ranks
from ..errors import UserError
from ..files import exclusive_lock, write_json_files
from ..squad.data import load_squad
from ..squad.pipeline import buckets_by_default
from ..squad.run import run_squad
from ..squad.split import SPLIT_HELP, SPLITS
from . import options

OUT_LOCK = ".squad.lock"  # in --out, held by the run writing there


def add_arguments(parser) -> None:
    options.add_model_options(parser, batch=8, fast=False, trace=True)
    options.add_data_option(parser)
    parser.add_argument("--split", default="all", choices=SPLITS, help=SPLIT_HELP)
    options.add_limit_option(parser, "questions (of the split)")
    parser.add_argument("--sample", type=options.count("--sample"),
                        help="N questions of the split drawn with --seed (a reproducible slice)")
    options.add_seed_option(parser, 0, "--sample")
    parser.add_argument("--pipeline-null", action="store_true",
                        help="decide 'no answer' like HF's pipeline (null score beats every span) even for a model that ships a threshold")
    options.add_out_option(parser, "directory for predictions.json, na_probs.json and eval.json", default="out/squad")
    parser.add_argument("--bucket", action=argparse.BooleanOptionalAction, default=None,
                        help="batch windows of similar length, each batch padded to a multiple of 32 (default: on for "
                             "cpu/cuda; off for tt, which runs one static 384-token shape)")
    options.add_rank_timeout_option(parser)


def _output_dir(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create --out {out}: {error.strerror}") from None
    return path


def run(args) -> int:
    ranks = Ranks.from_environment()
    bucket = buckets_by_default(args.device) if args.bucket is None else args.bucket
    if bucket and args.device == "tt":
        raise UserError("--bucket: the tt device runs one static sequence length (384); use --no-bucket")
    if ranks.many and args.device == "tt":
        raise UserError("--device tt runs in one process; start it without torchrun")
    out = Path(args.out) if not ranks.main else _output_dir(args.out)  # only rank 0 writes
    dataset = load_squad(args.data, args.limit, split=args.split, sample=args.sample, seed=args.seed)
    job = Job(ranks, args.device, args.rank_timeout) if ranks.many else None
    with job or nullcontext():
        # Refused rather than waited for: a second run would only overwrite the first one's results.
        with exclusive_lock(out / OUT_LOCK, f"another bertl11 squad writing to {out}", wait=False) if ranks.main else nullcontext():
            with job.node_leader_first() if job else nullcontext():
                model = options.load_model(args, compile=options.compile_policy(args, len(dataset["question"])))
            with model:
                result = run_squad(model, dataset, args.batch, bucket, progress=True,
                                   use_model_threshold=not args.pipeline_null, job=job)
                numerics, kernel = model.ops.describe(), model.ops.kernel()
            if result is None:
                return 0  # another rank's share: rank 0 writes and reports
            write_json_files({out / "predictions.json": result.predictions, out / "na_probs.json": result.na_probs,
                              out / "eval.json": result.scores})

    scores, seconds = result.scores, result.seconds
    processes = f", {ranks.size} ranks" if ranks.many else ""
    arithmetic = (f", {args.math_fidelity} matmuls" if args.math_fidelity else "") + (", exact accumulation" if args.exact_accumulation else "")
    print(f"{len(result.ids)} questions -> {result.windows} windows ({result.extra_windows} extra from long contexts); "
          f"model {args.model}, {args.config}{arithmetic}, batch {args.batch}, {args.device}{processes}, {args.split} articles, "
          f"{'bucketed' if bucket else 'static 384'} batches ({100 * result.padding:.0f}% padding)")
    print(f"numerics: {numerics}" + (f"; {kernel}" if kernel else ""))
    print(f"EM {scores['exact']:.2f}  F1 {scores['f1']:.2f}  over {scores['total']}")
    for split in ("HasAns", "NoAns"):
        if f"{split}_total" in scores:
            print(f"  {split:6} EM {scores[f'{split}_exact']:.2f}  F1 {scores[f'{split}_f1']:.2f}  over {scores[f'{split}_total']}")
    print(f"best na_prob threshold: EM {scores['best_exact']:.2f} at {scores['best_exact_thresh']:.4g}, "
          f"F1 {scores['best_f1']:.2f} at {scores['best_f1_thresh']:.4g}")
    total = sum(seconds.values())
    print(f"throughput: {result.features_per_second:.1f} features/s in the model ({seconds['model']:.2f} s); "
          f"{len(result.ids) / total:.1f} questions/s end to end ({total:.2f} s: preprocess "
          f"{seconds['preprocess']:.2f} s, model {seconds['model']:.2f} s, postprocess {seconds['postprocess']:.2f} s)")
    print(f"wrote {out / 'predictions.json'}, {out / 'na_probs.json'}, {out / 'eval.json'}")
    return 0
