"""Question answering end to end: `answer(model, questions, contexts)`.

It is three steps, each callable on its own so callers can time them apart:

    windows = encode(model.tokenizer, questions, contexts)          # preprocessing (tokenizer)
    batches = make_batches(windows, batch_size, bucket=True)
    logits = run_model(model, batches)                              # the model
    answers = postprocess(windows, logits, contexts, SpanSearch())  # postprocessing
"""

from __future__ import annotations

from .postprocess import Answer, SpanSearch, postprocess
from .preprocess import Batch, WindowConfig, encode, make_batches


def buckets_by_default(device: str) -> bool:
    """Length bucketing pays on CPU and CUDA; the TT device runs one static shape (384)."""
    return device.split(":")[0] in ("cpu", "cuda")


def model_search(model, *, use_model_threshold: bool = True, **options) -> SpanSearch:
    """The span search for `model`: its shipped null-score threshold unless `use_model_threshold=False`
    (then "no answer" follows the pipeline's handle_impossible_answer rule)."""
    threshold = model.source.na_prob_threshold if use_model_threshold else None
    return SpanSearch(na_prob_threshold=threshold, **options)


def run_model(model, batches: list[Batch], *, progress: bool = False, description: str = "windows"):
    """(start, end) float32 logits of every window, trimmed to its length, indexed like the windows."""
    from tqdm.auto import tqdm

    total = sum(len(b.windows) for b in batches)
    logits: list = [None] * (max((max(b.windows) for b in batches if b.windows), default=-1) + 1)
    with tqdm(total=total, unit="feature", desc=description, disable=not progress) as bar:
        for batch in batches:
            start, end = model(batch.input_ids, batch.token_type_ids, batch.attention_mask)
            start, end = start.numpy(), end.numpy()
            lengths = batch.attention_mask.sum(dim=1).tolist()
            for row, window in enumerate(batch.windows):  # padding rows come after these and are dropped
                logits[window] = (start[row, : lengths[row]], end[row, : lengths[row]])
            bar.update(len(batch.windows))
    return logits


def answer(model, questions: list[str], contexts: list[str], *, batch_size: int = 8, top_k: int = 1,
           handle_impossible_answer: bool = False, max_answer_len: int = 15, align_to_words: bool = True,
           windows: WindowConfig = WindowConfig(), bucket: bool | None = None, progress: bool = False,
           use_model_threshold: bool = True) -> list[Answer]:
    """Answer each question from its context, as HF `pipeline("question-answering")` would on the same model.

    model:  a `bertl11.QAModel`
    Returns one `Answer` per question: text, score, start/end character offsets in the context, na_prob,
    and (top_k > 1) the runners-up in `alternatives`. With handle_impossible_answer the answer may be ""
    (`is_impossible`). A model that ships a null-score threshold (`minilm-squad2`, a `bertl11 finetune`
    output) answers "" when na_prob exceeds it; use_model_threshold=False gives the pipeline's behaviour.
    bucket: pad batches by length (default: on for cpu/cuda, off for tt).
    """
    if bucket is None:
        bucket = buckets_by_default(str(getattr(model.ops, "device", "cpu")))
    encoded = encode(model.tokenizer, list(questions), list(contexts), windows)
    batches = make_batches(encoded, batch_size, bucket=bucket, seq_len=windows.max_seq_len,
                           pad_id=model.shape.pad_token_id)
    logits = run_model(model, batches, progress=progress)
    search = model_search(model, use_model_threshold=use_model_threshold, top_k=top_k, max_answer_len=max_answer_len,
                          handle_impossible_answer=handle_impossible_answer, align_to_words=align_to_words)
    return postprocess(encoded, logits, list(contexts), search)

