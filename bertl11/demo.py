"""The demo: answer one batch of questions from a JSON file, like the seed's demo.py, with its timings.

The input file is a JSON list of exactly `--batch` objects `{"context": str, "question": str}` (the seed's rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import UserError
from .files import read_json

# Inside the package, so an installed bertl11 has it too (the widget's presets come from it as well).
PACKAGED_INPUT = Path(str(resources.files("bertl11") / "data" / "input_data.json"))
DEFAULT_BATCH = 12
MAX_INPUT_BYTES = 16 * 1024 * 1024  # 12 SQuAD paragraphs take ~10 KB; anything near this is not a demo batch
FIELDS = ("context", "question")


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
    """The seed's batch limits on Tenstorrent cards (one grid line per sequence); any batch >= 1 elsewhere
    (the command line checks that while parsing)."""
    if device == "tt" and card is not None:
        from .cards import get_card

        spec = get_card(card)
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
             warnings: list[str] | None = None, cache_dir: Path | None = None, fast: bool = False, trace: bool = False,
             mesh: tuple[int, int] = (1, 1), math_fidelity: str | None = None, exact_accumulation: bool = False) -> DemoResult:
    from .runtime import QAModel
    from .squad.pipeline import run_pipeline
    from .squad.postprocess import SpanSearch

    chips = mesh[0] * mesh[1]
    with QAModel.load(model_name, config=config, device=device, cache_dir=cache_dir, fast=fast, trace=trace, mesh=mesh,
                      math_fidelity=math_fidelity, exact_accumulation=exact_accumulation) as model:
        opened = model.ops.card  # the card ttnn opened, when no --card was given
        check_batch(batch // chips, device, card or (opened.name if opened is not None else None))  # per chip
        # Two passes: the first includes any compile / program-cache fill, the second is the cached run.
        run = run_pipeline(model, [item.question for item in inputs], [item.context for item in inputs], batch_size=batch,
                           search=SpanSearch(handle_impossible_answer=True), model_runs=2)
    answers = run.answers
    timings = {
        "weight_loading_s": model.load_report.seconds, "preprocessing_s": run.seconds["preprocess"],
        "first_run_s": run.model_runs[0], "cached_run_s": run.model_runs[1], "postprocessing_s": run.seconds["postprocess"],
    }
    rows = [
        {"index": i, "question": q.question, "context": q.context, "answer": a.text, "score": a.score, "start": a.start,
         "end": a.end, "na_prob": a.na_prob}
        for i, (q, a) in enumerate(zip(inputs, answers))
    ]
    report = model.load_report
    cache = "hit" if report.cache_hit else "miss"
    if report.detail:
        cache += f" ({report.detail})"
    return DemoResult(model.source.name, config, device, batch, rows, timings, cache, len(run.windows), list(warnings or []))


__all__ = ["DemoResult", "QAInput", "read_inputs", "validate_inputs", "run_demo", "choose_model", "check_batch"]
