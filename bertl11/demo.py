"""`bertl11 demo`: answer one batch of questions from a JSON file, like the seed's demo.py, with its timings.

The input file is a JSON list of exactly `--batch` objects `{"context": str, "question": str}` (the seed's rule).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError
from .files import read_json

PACKAGED_INPUT = Path(__file__).resolve().parents[1] / "data" / "input_data.json"
DEFAULT_BATCH = 12
MAX_INPUT_BYTES = 16 * 1024 * 1024  # 12 SQuAD paragraphs take ~10 KB; anything near this is not a demo batch
FIELDS = ("context", "question")
CONTEXT_PREVIEW = 100


@dataclass(frozen=True)
class QAInput:
    context: str
    question: str


def read_inputs(path: Path, batch: int) -> tuple[list[QAInput], list[str]]:
    """The file's inputs and any warnings, or a one-line `UserError` naming the input and field at fault."""
    document = read_json(path, "input file", MAX_INPUT_BYTES)
    return validate_inputs(document, batch, str(path))


def validate_inputs(document, batch: int, where: str = "input") -> tuple[list[QAInput], list[str]]:
    if not isinstance(document, list):
        raise UserError(f'{where}: expected a JSON list of {{"context", "question"}} objects, found {type(document).__name__}')
    if len(document) != batch:
        raise UserError(
            f"{where} holds {len(document)} inputs but the batch is {batch}: give exactly {batch} inputs "
            f"or run with --batch {len(document)}" if document else f"{where} holds no inputs; the batch is {batch}"
        )
    inputs, warnings = [], []
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise UserError(f'{where}: input[{index}] must be an object with "context" and "question", found {type(item).__name__}')
        for name in FIELDS:
            if name not in item:
                raise UserError(f'{where}: input[{index}] has no "{name}" field')
            value = item[name]
            if not isinstance(value, str):
                raise UserError(f'{where}: input[{index}]: "{name}" must be a string, found {type(value).__name__}')
            if not value.strip():
                raise UserError(f'{where}: input[{index}]: "{name}" is empty')
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            warnings.append(f"{where}: input[{index}]: ignoring unknown field(s) {', '.join(map(repr, unknown))}")
        inputs.append(QAInput(item["context"], item["question"]))
    return inputs, warnings


def check_batch(batch: int, device: str, card: str | None) -> None:
    """The seed's batch limits on Tenstorrent cards (one grid line per sequence); any batch >= 1 elsewhere."""
    if batch < 1:
        raise UserError(f"--batch must be at least 1, not {batch}")
    if device == "tt" and card is not None:
        from .devices import get_device

        spec = get_device(card)
        first, last = spec.batch_range
        if not first <= batch <= last:
            raise UserError(f"{spec.title} runs batch {first}-{last}, not {batch}")


def choose_model(requested: str | None) -> tuple[str, str | None]:
    """The model to run and, when falling back to the offline model, the warning to show."""
    from .sources import DEFAULT_MODEL, OFFLINE_DEFAULT, hub_reachable, is_cached_on_hub

    if requested is not None:
        return requested, None
    if is_cached_on_hub(DEFAULT_MODEL) or hub_reachable(DEFAULT_MODEL):
        return DEFAULT_MODEL, None
    return OFFLINE_DEFAULT, (
        f"{DEFAULT_MODEL} is not in the HF cache and the hub is unreachable: running the offline model "
        f"'{OFFLINE_DEFAULT}' (MiniLM fine-tuned on 23 SQuAD v2 dev articles, shipped in the package)"
    )


@dataclass
class DemoResult:
    model: str
    config: str
    device: str
    batch: int
    answers: list[dict]
    timings: dict[str, float]
    cache: str
    sequences: int
    warnings: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Inferences (inputs answered) per second of the cached run, as the seed reports it."""
        return self.batch / self.timings["cached_run_s"]


def run_demo(inputs: list[QAInput], model_name: str, config: str, device: str, batch: int, card: str | None = None,
             warnings: list[str] | None = None) -> DemoResult:
    from .runtime import QAModel
    from .squad.pipeline import buckets_by_default, model_search, run_model
    from .squad.postprocess import postprocess
    from .squad.preprocess import WindowConfig, encode, make_batches

    timings: dict[str, float] = {}
    model = QAModel.load(model_name, config=config, device=device)
    timings["weight_loading_s"] = model.load_report.seconds
    check_batch(batch, device, card or getattr(getattr(model.ops, "card", None), "name", None))  # the card ttnn opened

    questions = [item.question for item in inputs]
    contexts = [item.context for item in inputs]
    started = time.perf_counter()
    windows_config = WindowConfig()
    windows = encode(model.tokenizer, questions, contexts, windows_config)
    batches = make_batches(windows, batch, bucket=buckets_by_default(device), seq_len=windows_config.max_seq_len,
                           pad_id=model.shape.pad_token_id)
    timings["preprocessing_s"] = time.perf_counter() - started

    for run in ("first_run_s", "cached_run_s"):  # the first run includes any compile / program-cache fill
        started = time.perf_counter()
        logits = run_model(model, batches)
        timings[run] = time.perf_counter() - started

    started = time.perf_counter()
    answers = postprocess(windows, logits, contexts, model_search(model, handle_impossible_answer=True))
    timings["postprocessing_s"] = time.perf_counter() - started

    rows = [
        {"index": i, "question": q.question, "context": q.context, "answer": a.text, "score": a.score, "start": a.start,
         "end": a.end, "na_prob": a.na_prob}
        for i, (q, a) in enumerate(zip(inputs, answers))
    ]
    report = model.load_report
    cache = "hit" if getattr(report, "cache_hit", False) else "miss"
    if getattr(report, "detail", ""):
        cache += f" ({report.detail})"
    return DemoResult(model.source.name, config, device, batch, rows, timings, cache, len(windows), list(warnings or []))


def shorten(text: str, width: int = CONTEXT_PREVIEW) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def print_report(result: DemoResult, out=sys.stdout) -> None:
    for row in result.answers:
        answer = row["answer"] or "no answer"
        print(f"[{row['index'] + 1}/{result.batch}] question: {row['question']}", file=out)
        print(f"        context:  {shorten(row['context'])}", file=out)
        print(f"        answer:   {answer}  (score {row['score']:.3g})", file=out)
    t = result.timings
    print(f"\n{result.model} | {result.config} | {result.device} | batch {result.batch} ({result.sequences} sequences)", file=out)
    print(f"  preprocessing         {t['preprocessing_s']:8.3f} s", file=out)
    print(f"  weight loading        {t['weight_loading_s']:8.3f} s  cache {result.cache}", file=out)
    print(f"  first run             {t['first_run_s']:8.3f} s", file=out)
    print(f"  cached run            {t['cached_run_s']:8.3f} s", file=out)
    print(f"  throughput            {result.throughput:8.2f} inferences/s", file=out)
    print(f"  postprocessing        {t['postprocessing_s']:8.3f} s", file=out)


def add_arguments(parser) -> None:
    from .config import DEFAULT_RUN_CONFIG

    parser.add_argument("--input", type=Path, default=PACKAGED_INPUT, help="JSON list of exactly BATCH {context, question} objects")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="inputs per batch (default %(default)s)")
    parser.add_argument("--model", default=None, help="HF hub id, local directory, minilm-squad2, tiny, minilm or large-random "
                        "(default: phiyodr/bert-large-finetuned-squad2 if available, else minilm-squad2)")
    parser.add_argument("--config", default=DEFAULT_RUN_CONFIG, help="run configuration (default %(default)s)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "tt"))
    parser.add_argument("--card", default=None, choices=("e150", "n150", "n300", "p150"),
                        help="with --device tt: the card, for its batch limits (default: the card ttnn opens)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


def run(args) -> int:
    from .config import get_run_config

    check_batch(args.batch, args.device, args.card)
    inputs, warnings = read_inputs(args.input, args.batch)
    get_run_config(args.config)
    model_name, fallback = choose_model(args.model)
    if fallback:
        warnings.append(fallback)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    result = run_demo(inputs, model_name, args.config, args.device, args.batch, args.card, warnings)
    if args.json:
        print(json.dumps({**asdict(result), "throughput": result.throughput}, indent=2))
    else:
        print_report(result)
    return 0


__all__ = ["DemoResult", "QAInput", "read_inputs", "validate_inputs", "run_demo", "print_report", "choose_model"]
