"""A model's pass over SQuAD v2 questions, scored: `run_squad` (what `bertl11 squad` runs).

Every question is answered, unanswerable ones included, from all windows of its context, with HF
pipeline semantics and handle_impossible_answer: the answer is "" when the null score beats every span,
or, for a model that ships a null-score threshold (minilm-squad2), when na_prob exceeds it
(--pipeline-null restores the pipeline's rule). --split held-out scores only the articles never trained on.
Under torchrun the ranks share the batches and rank 0 post-processes and scores; the predictions are those of
one process (`distributed.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..distributed import Job
from ..runtime import QAModel
from .data import answers_by_id
from .metric import evaluate
from .pipeline import run_pipeline
from .postprocess import Answer, SpanSearch


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
              use_model_threshold: bool = True, job: Job | None = None) -> SquadRun | None:
    """Answer every question of `dataset` (from `load_squad`) with `model` and score the answers.
    With a `job` of many ranks, rank 0 gets the run and the others None."""
    run = run_pipeline(model, dataset["question"], dataset["context"], batch_size=batch,
                       search=SpanSearch(handle_impossible_answer=True), use_model_threshold=use_model_threshold,
                       bucket=bucket, progress=progress, job=job)
    if run is None:
        return None
    windows = run.windows
    result = SquadRun(list(dataset["id"]), run.answers, {}, len(windows), len(windows) - len({w.question for w in windows}),
                      run.padding, run.seconds)
    result.scores = evaluate(answers_by_id(dataset), result.predictions, result.na_probs)
    return result


