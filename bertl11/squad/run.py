"""`bertl11 squad`: run a model over SQuAD v2 and score it.

    bertl11 squad --model tiny --data data/squad/dev-v2.0.json --limit 200

Every question is answered, unanswerable ones included, from all windows of its context, with HF
pipeline semantics and handle_impossible_answer: the answer is "" when the null score beats every span,
or, for a model that ships a null-score threshold (minilm-squad2), when na_prob exceeds it
(--pipeline-null restores the pipeline's rule). --split held-out scores only the articles never trained on.
Writes predictions.json (id -> answer) and na_probs.json (id -> na_prob) to --out, the files the official
script and `bertl11 score` read, and prints the score, its HasAns/NoAns split, the best na_prob threshold
and the throughput.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .. import options
from ..errors import UserError
from ..files import write_json
from ..runtime import QAModel
from .data import answers_by_id, load_squad
from .metric import evaluate
from .pipeline import buckets_by_default, run_pipeline
from .postprocess import Answer, SpanSearch
from .split import SPLIT_HELP, SPLITS


def add_arguments(parser) -> None:
    options.add_model_options(parser, batch=8, fast=False, trace=True)
    options.add_data_option(parser)
    parser.add_argument("--split", default="all", choices=SPLITS, help=SPLIT_HELP)
    parser.add_argument("--limit", type=options.count("--limit"), help="only the first N questions (of the split)")
    parser.add_argument("--sample", type=options.count("--sample"),
                        help="N questions of the split drawn with --seed (a reproducible slice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--pipeline-null", action="store_true",
                        help="decide 'no answer' like HF's pipeline (null score beats every span) even for a model that ships a threshold")
    parser.add_argument("--out", default="out/squad", help="directory for predictions.json and na_probs.json (default out/squad)")
    parser.add_argument("--bucket", action=argparse.BooleanOptionalAction, default=None,
                        help="batch windows of similar length, each batch padded to a multiple of 32 (default: on for "
                             "cpu/cuda; off for tt, which runs one static 384-token shape)")


def _output_dir(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create --out {out}: {error.strerror}") from None
    return path


@dataclass
class SquadRun:
    """One model's pass over SQuAD questions: answers, the official scores, and where the time went."""

    ids: list[str]
    answers: list[Answer]  # one per question
    scores: dict  # the official keys (exact, f1, HasAns_*, NoAns_*, best_*)
    windows: int
    extra_windows: int  # windows beyond one per question, from long contexts
    padding: float  # share of computed positions that were padding
    seconds: dict[str, float]  # preprocess, model, postprocess

    @property
    def predictions(self) -> dict[str, str]:
        return {qid: a.text for qid, a in zip(self.ids, self.answers)}

    @property
    def na_probs(self) -> dict[str, float]:
        return {qid: a.na_prob for qid, a in zip(self.ids, self.answers)}

    @property
    def features_per_second(self) -> float:
        return self.windows / self.seconds["model"]


def run_squad(model: QAModel, dataset, batch: int = 8, bucket: bool | None = None, progress: bool = False,
              use_model_threshold: bool = True) -> SquadRun:
    """Answer every question of `dataset` (from `load_squad`) with `model` and score the answers."""
    run = run_pipeline(model, dataset["question"], dataset["context"], batch_size=batch,
                       search=SpanSearch(handle_impossible_answer=True), use_model_threshold=use_model_threshold,
                       bucket=bucket, progress=progress)
    windows = run.windows
    result = SquadRun(list(dataset["id"]), run.answers, {}, len(windows), len(windows) - len({w.question for w in windows}),
                      run.padding, run.seconds)
    result.scores = evaluate(answers_by_id(dataset), result.predictions, result.na_probs)
    return result


def run(args) -> int:
    bucket = buckets_by_default(args.device) if args.bucket is None else args.bucket
    if bucket and args.device == "tt":
        raise UserError("--bucket: the tt device runs one static sequence length (384); use --no-bucket")
    out = _output_dir(args.out)
    dataset = load_squad(args.data, args.limit, split=args.split, sample=args.sample, seed=args.seed)
    with options.load_model(args) as model:
        result = run_squad(model, dataset, args.batch, bucket, progress=True, use_model_threshold=not args.pipeline_null)
    write_json(out / "predictions.json", result.predictions)
    write_json(out / "na_probs.json", result.na_probs)
    write_json(out / "eval.json", result.scores)

    scores, seconds = result.scores, result.seconds
    print(f"{len(result.ids)} questions -> {result.windows} windows ({result.extra_windows} extra from long contexts); "
          f"model {args.model}, {args.config}, batch {args.batch}, {args.device}, {args.split} articles, "
          f"{'bucketed' if bucket else 'static 384'} batches ({100 * result.padding:.0f}% padding)")
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
