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

from importlib import import_module

# `postprocess` is imported here because a function shares its submodule's name (an import of the submodule
# would otherwise leave the module where the function is expected); it needs numpy only.
from .postprocess import Answer, SpanSearch, postprocess

# name -> the submodule that defines it, imported on first use: the preprocessing and the pipeline need torch,
# which `bertl11 score` (the metric alone) should not wait for.
_HOMES = {
    "answers_by_id": "data", "load_squad": "data",
    "evaluate": "metric",
    "answer": "pipeline", "buckets_by_default": "pipeline", "run_model": "pipeline",
    "Batch": "preprocess", "Window": "preprocess", "WindowConfig": "preprocess", "bucketed_batches": "preprocess",
    "encode": "preprocess", "make_batches": "preprocess", "static_batches": "preprocess",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted([*_HOMES, "Answer", "SpanSearch", "postprocess"])
