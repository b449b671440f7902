"""The demo: answer one batch of questions from a JSON file, like the seed's demo.py, with its timings.

The input file is a JSON list of exactly `--batch` objects `{"context": str, "question": str}` (the seed's rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UserError
from .files import read_json

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
             mesh: tuple[int, int] = (1, 1), compile: str = "cached", math_fidelity: str | None = None,
             exact_accumulation: bool = False, progress: bool = False,
             notice: Callable[[str], None] | None = None) -> DemoResult:
    """Answer `inputs` in one batch, twice (a first and a cached run), with the seed's timings. `compile`: what the
    fast path does when its compiled forward is not cached yet (`compiled.POLICIES`; a 12-question demo does not pay
    for a compile of minutes). `progress`: a bar per run (BERT-large on a CPU takes minutes). notice: told, in one
    line before the batch runs, what the card opened has never run (`Card.untested`); the line is kept in the
    result's warnings too. `math_fidelity`, `exact_accumulation`: as `QAModel.load`."""
    from .runtime import QAModel
    from .squad.pipeline import run_pipeline
    from .squad.postprocess import SpanSearch

    chips = mesh[0] * mesh[1]
    warnings = list(warnings or [])
    with QAModel.load(model_name, config=config, device=device, cache_dir=cache_dir, fast=fast, trace=trace, mesh=mesh,
                      compile=compile, math_fidelity=math_fidelity, exact_accumulation=exact_accumulation) as model:
        opened = model.ops.card  # the card ttnn opened, when no --card was given
        check_batch(batch // chips, device, card or (opened.name if opened is not None else None))  # per chip
        untested = opened.untested(config, batch // chips) if opened is not None else None
        if untested:
            warnings.append(untested)
            if notice is not None:
                notice(untested)
        # Two passes: the first includes any compile / program-cache fill, the second is the cached run.
        run = run_pipeline(model, [item.question for item in inputs], [item.context for item in inputs], batch_size=batch,
                           search=SpanSearch(handle_impossible_answer=True), model_runs=2, progress=progress)
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
    return DemoResult(model.source.name, config, device, batch, rows, timings, cache, len(run.windows), warnings)


__all__ = ["DemoResult", "QAInput", "read_inputs", "validate_inputs", "run_demo", "check_batch"]
