"""SQuAD v2: data, windows, answers with HF pipeline semantics, and the official score.

    from bertl11 import QAModel
    from bertl11.squad import answer

    model = QAModel.load("minilm", config="FLOAT32")
    best = answer(model, ["Who wrote it?"], ["It was written by Ada."], batch_size=8)[0]
    best.text, best.score, best.start, best.end

The pieces `answer` is made of (for timing them apart, or for the `bertl11 squad` command):
`encode` -> `make_batches` / `bucketed_batches` -> `run_model` -> `postprocess`; `load_squad` reads the
data and `evaluate` scores predictions like the official SQuAD v2 script.
"""

from .data import answers_by_id, load_squad
from .metric import evaluate
from .pipeline import answer, buckets_by_default, run_model
from .postprocess import Answer, SpanSearch, postprocess
from .preprocess import Batch, Window, WindowConfig, bucketed_batches, encode, make_batches, static_batches

__all__ = [
    "Answer", "Batch", "SpanSearch", "Window", "WindowConfig", "answer", "answers_by_id", "bucketed_batches",
    "buckets_by_default", "encode", "evaluate", "load_squad", "make_batches", "postprocess", "run_model",
    "static_batches",
]
