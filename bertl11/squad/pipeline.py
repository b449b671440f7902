"""Question answering end to end, timed: `run_pipeline(model, questions, contexts)`, and `answer` for its answers.

The one place the steps are put together (`answer`, `bertl11 demo`, `bertl11 squad`, the widget, notebook 02
and fine-tuning's validation all come through here):

    windows = encode(model.tokenizer, questions, contexts)          # preprocess (tokenizer)
    batches = make_batches(windows, batch_size, bucket=True)
    logits = run_model(model, batches)                              # the model (or its ranks' shares)
    answers = postprocess(windows, logits, contexts, SpanSearch())  # postprocess
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..errors import require_at_least
from .postprocess import Answer, SpanSearch, postprocess
from .preprocess import Batch, Window, WindowConfig, encode, make_batches


def buckets_by_default(device: str) -> bool:
    """Length bucketing pays on CPU and CUDA; the TT device runs one static shape (384)."""
    return device.split(":")[0] in ("cpu", "cuda")


def run_model(model, batches: list[Batch], *, progress: bool = False, description: str = "windows", job=None,
              on_batch=None):
    """(start, end) float32 logits of every window, trimmed to its length, indexed like the windows.

    job: a `distributed.Job` of many ranks: this rank runs its share of the batches, rank 0's bar shows every
         rank's progress, and rank 0 gets every window's logits; the other ranks get None.
    on_batch: called with (windows done, windows in all) after each batch (the app's progress bar).
    """
    from tqdm.auto import tqdm

    total = sum(len(b.windows) for b in batches)
    logits: list = [None] * (max((max(b.windows) for b in batches if b.windows), default=-1) + 1)
    share = batches if job is None else job.share(batches)
    if job is not None:
        job.start_pass()
        progress = progress and job.ranks.main
    done = 0
    inputs = [(b.input_ids, b.token_type_ids, b.attention_mask) for b in share]
    # A `QAModel` streams (a traced card runs the next batch while this one is post-processed); a plain callable
    # (the fine-tuner's validation forward) is called per batch.
    results = model.stream(inputs) if hasattr(model, "stream") else (model(*batch) for batch in inputs)
    with tqdm(total=total, unit="feature", desc=description, disable=not progress) as bar:
        for batch, (start, end) in zip(share, results):
            start, end = start.numpy(), end.numpy()
            lengths = batch.attention_mask.sum(dim=1).tolist()
            for row, window in enumerate(batch.windows):  # padding rows come after these and are dropped
                logits[window] = (start[row, : lengths[row]], end[row, : lengths[row]])
            if job is None:
                bar.update(len(batch.windows))
            else:
                job.finished(len(batch.windows), bar)
            done += len(batch.windows)
            if on_batch is not None:
                on_batch(done, total)
        if job is None:
            return logits
        job.wait_for_all(total, bar)
    return job.gather(logits, batches)


@dataclass
class PipelineRun:
    """Answers, what they were computed from, and where the time went.

    seconds:    preprocess, model (the last pass over the batches), postprocess
    model_runs: each pass's seconds: the first includes any compile / program-cache fill, the rest are cached
    """

    answers: list[Answer]
    windows: list[Window]
    batches: list[Batch]
    seconds: dict[str, float]
    model_runs: list[float]

    @property
    def padding(self) -> float:
        """The share of computed positions that were padding."""
        return 1 - sum(len(w) for w in self.windows) / sum(b.input_ids.numel() for b in self.batches)


def model_search(model, search: SpanSearch = SpanSearch(), use_model_threshold: bool = True) -> SpanSearch:
    """`search` with `model`'s shipped null-score threshold (a `bertl11 finetune` output, `minilm-squad2`) unless
    `use_model_threshold=False` (then "no answer" follows the pipeline's handle_impossible_answer rule)."""
    threshold = model.source.na_prob_threshold if use_model_threshold else None
    return replace(search, na_prob_threshold=threshold) if threshold is not None else search


def run_pipeline(model, questions: list[str], contexts: list[str], *, batch_size: int = 8,
                 search: SpanSearch = SpanSearch(), use_model_threshold: bool = True,
                 window_config: WindowConfig = WindowConfig(), bucket: bool | None = None, model_runs: int = 1,
                 progress: bool = False, job=None, on_batch=None) -> PipelineRun | None:
    """Answer each question from its context, timing each stage.

    model:   a `bertl11.QAModel`, or what acts like one: tokenizer, shape, device, source.na_prob_threshold (read
             only with use_model_threshold) and a call returning float32 CPU logits (`training.loop.PipelineModel`)
    search:  how spans are chosen; a model that ships a null-score threshold answers "" when na_prob exceeds
             it, unless use_model_threshold=False (`model_search`)
    bucket:  pad batches by length (default: on for cpu/cuda, off for tt)
    model_runs: passes over the batches (the demo times a first and a cached one); answers come from the last
    job:     a `distributed.Job`: the ranks share the batches (`run_model`); rank 0 post-processes and gets the
             run, the other ranks get None
    on_batch: called with (windows done, windows in all) after each batch of each pass
    """
    require_at_least("model runs", model_runs)
    search = model_search(model, search, use_model_threshold)
    questions, contexts = list(questions), list(contexts)
    bucket = buckets_by_default(model.device) if bucket is None else bucket
    started = time.perf_counter()
    windows = encode(model.tokenizer, questions, contexts, window_config)
    batches = make_batches(windows, batch_size, bucket=bucket, seq_len=window_config.max_seq_len,
                           pad_id=model.shape.pad_token_id)
    preprocess_seconds = time.perf_counter() - started
    passes = []
    for _ in range(model_runs):
        started = time.perf_counter()
        logits = run_model(model, batches, progress=progress, job=job, on_batch=on_batch)
        passes.append(time.perf_counter() - started)
    if logits is None:
        return None
    started = time.perf_counter()
    answers = postprocess(windows, logits, contexts, search)
    seconds = {"preprocess": preprocess_seconds, "model": passes[-1], "postprocess": time.perf_counter() - started}
    return PipelineRun(answers, windows, batches, seconds, passes)


def answer(model, questions: list[str], contexts: list[str], *, batch_size: int = 8, top_k: int = 1,
           handle_impossible_answer: bool = False, max_answer_len: int = 15, align_to_words: bool = True,
           window_config: WindowConfig = WindowConfig(), bucket: bool | None = None, progress: bool = False,
           use_model_threshold: bool = True) -> list[Answer]:
    """Answer each question from its context, as HF `pipeline("question-answering")` would on the same model.

    model:  a `bertl11.QAModel`
    Returns one `Answer` per question: text, score, start/end character offsets in the context, na_prob,
    and (top_k > 1) the runners-up in `alternatives`. With handle_impossible_answer the answer may be ""
    (`is_impossible`). A model that ships a null-score threshold (`minilm-squad2`, a `bertl11 finetune`
    output) answers "" when na_prob exceeds it; use_model_threshold=False gives the pipeline's behaviour.
    bucket: pad batches by length (default: on for cpu/cuda, off for tt).
    """
    search = SpanSearch(top_k, max_answer_len, handle_impossible_answer, align_to_words)
    return run_pipeline(model, questions, contexts, batch_size=batch_size, search=search, window_config=window_config,
                        bucket=bucket, progress=progress, use_model_threshold=use_model_threshold).answers
