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
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_RUN_CONFIG, RUN_CONFIGS
from ..errors import UserError
from ..files import write_json
from ..runtime import DEVICES, QAModel
from ..sources import DEFAULT_MODEL
from .data import DATA_HELP, answers_by_id, load_squad
from .metric import evaluate
from .pipeline import buckets_by_default, model_search, run_model
from .postprocess import postprocess
from .preprocess import WindowConfig, encode, make_batches
from .split import SPLIT_HELP, SPLITS


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"HF hub id, model directory, tiny, minilm or large-random (default {DEFAULT_MODEL})")
    parser.add_argument("--config", default=DEFAULT_RUN_CONFIG, choices=list(RUN_CONFIGS), metavar="CONFIG",
                        help=f"run configuration: {', '.join(RUN_CONFIGS)} (default {DEFAULT_RUN_CONFIG})")
    parser.add_argument("--batch", type=int, default=8, help="sequences per model call (default 8)")
    parser.add_argument("--data", default="auto", help=DATA_HELP)
    parser.add_argument("--split", default="all", choices=SPLITS, help=SPLIT_HELP)
    parser.add_argument("--limit", type=int, help="only the first N questions (of the split)")
    parser.add_argument("--sample", type=int, help="N questions of the split drawn with --seed (a reproducible slice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--pipeline-null", action="store_true",
                        help="decide 'no answer' like HF's pipeline (null score beats every span) even for a model that ships a threshold")
    parser.add_argument("--out", default="out/squad", help="directory for predictions.json and na_probs.json (default out/squad)")
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--bucket", action=argparse.BooleanOptionalAction, default=None,
                        help="batch windows of similar length, each batch padded to a multiple of 32 (default: on for "
                             "cpu/cuda; off for tt, which runs one static 384-token shape)")
    parser.add_argument("--fast", action="store_true", help="the torch backend's speed path instead of the per-op simulation")


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
    answers: list  # postprocess.Answer, one per question
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
    if batch < 1:
        raise UserError(f"--batch must be at least 1, not {batch}")
    device = str(getattr(model.ops, "device", "cpu"))
    bucket = buckets_by_default(device) if bucket is None else bucket
    ids, questions, contexts = list(dataset["id"]), list(dataset["question"]), list(dataset["context"])

    started = time.perf_counter()
    windows = encode(model.tokenizer, questions, contexts, WindowConfig())
    batches = make_batches(windows, batch, bucket=bucket, pad_id=model.shape.pad_token_id)
    encoded = time.perf_counter()
    logits = run_model(model, batches, progress=progress)
    ran = time.perf_counter()
    search = model_search(model, use_model_threshold=use_model_threshold, handle_impossible_answer=True)
    answers = postprocess(windows, logits, contexts, search)
    finished = time.perf_counter()

    result = SquadRun(
        ids, answers, {}, len(windows), len(windows) - len({w.question for w in windows}),
        1 - sum(len(w) for w in windows) / sum(b.input_ids.numel() for b in batches),
        {"preprocess": encoded - started, "model": ran - encoded, "postprocess": finished - ran},
    )
    result.scores = evaluate(answers_by_id(dataset), result.predictions, result.na_probs)
    return result


def run(args) -> int:
    bucket = buckets_by_default(args.device) if args.bucket is None else args.bucket
    if bucket and args.device == "tt":
        raise UserError("--bucket: the tt device runs one static sequence length (384); use --no-bucket")
    if args.batch < 1:
        raise UserError(f"--batch must be at least 1, not {args.batch}")
    out = _output_dir(args.out)
    dataset = load_squad(args.data, args.limit, split=args.split, sample=args.sample, seed=args.seed)
    model = QAModel.load(args.model, args.config, args.device, fast=args.fast)
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
