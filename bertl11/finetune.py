"""Fine-tuning an HF BERT encoder for SQuAD v2 extractive QA (what `bertl11 finetune` runs).

The recipe, as data (`Recipe`):
- Windows come from `bertl11.squad`'s own windowing (the pipeline's 384 tokens / stride 128 by default),
  so the model trains on exactly the sequences it later answers from.
- An unanswerable question labels every window [CLS] (start = end = 0). A window of an answerable
  question that does not contain the answer is dropped: labelling it [CLS] teaches the model to say
  "no answer" to answerable questions, which a small model trained on little data overdoes.
  With `all_answers`, each distinct annotator span of a question is a target (dev questions list up to five).
- Batches are length-bucketed (windows sorted by length within seeded shuffled pools, then the batches
  shuffled), so little compute goes to padding; everything is seeded.
- HF's `BertForQuestionAnswering` loss, torch's AdamW, transformers' linear warm-up/decay schedule, on the CPU
  or, with `--device cuda`, on a GPU (what SQuAD v2 train's 130k questions need: on 2 CPU cores one epoch is hours).
  Word embeddings are frozen by default: 7.5k questions cannot improve a 30k-word table, and freezing it
  halves the optimiser's work.
- Held-out articles (`squad.split.HELD_OUT_ARTICLES`) are never trained on. The last
  `validation_articles` articles of the training pool pick the best epoch and the null-score threshold
  (the official best_f1_thresh on na_prob), which is written to the output's `bertl11.json` and used
  by `answer`, `squad`, `demo` and the widget by default.

The output is a standard HF directory (config.json, model.safetensors, tokenizer files) that
`BertForQuestionAnswering.from_pretrained` and `--model DIR` both load, plus `bertl11.json`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError, require_at_least
from .files import write_json

MODEL_CARD = "bertl11.json"  # the recipe, the split, validation scores and the null-score threshold
POOL_BATCHES = 50  # batches' worth of shuffled windows sorted by length together


@dataclass(frozen=True)
class Recipe:
    epochs: float = 3.0
    lr: float = 2e-4
    warmup: float = 0.1  # share of the steps spent warming up
    weight_decay: float = 0.01
    batch_size: int = 32
    max_seq_len: int = 384
    doc_stride: int = 128
    seed: int = 11
    validation_articles: int = 2
    freeze_word_embeddings: bool = True
    all_answers: bool = False  # every distinct annotator span is a target (dev questions have up to 5), not only the first
    deletion_negatives: bool = False  # also ask each answerable question of its paragraph without the answer's sentences
    precision: str = "auto"  # bfloat16 autocast where the machine computes bf16 natively, else float32

    def __post_init__(self):
        for name in ("epochs", "lr"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"--warmup must be in [0, 1), not {self.warmup}")
        require_at_least("--batch-size", self.batch_size)
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")


PRECISIONS = ("auto", "float32", "bfloat16")


TRAINING_DEVICES = ("cpu", "cuda")


def autocast(device_type: str, dtype):
    """The forward pass's precision on `device_type`: bfloat16 autocast for `dtype` bfloat16, plain float32 for None."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=dtype is not None)


def autocast_dtype(precision: str, device_type: str = "cpu"):
    """bfloat16 for autocast, or None (float32). `auto` on the CPU asks the machine probe whether bf16 GEMMs are
    native here (elsewhere they run ~200x slower than float32); on CUDA, whether the GPU supports bf16."""
    from .machine import probe

    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device_type == "cuda" else probe().native("bfloat16")
        return torch.bfloat16 if native else None
    return torch.bfloat16 if precision == "bfloat16" else None


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def device_name(device: torch.device) -> str:
    """What the model card records as the training device: `cpu`, or the GPU's name."""
    return f"cuda {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


# ---------------------------------------------------------------------------------------------- data

def answer_tokens(window, answer_start: int, answer_text: str) -> tuple[int, int] | None:
    """The (first, last) context tokens of the answer's characters in this window, or None if it is not inside."""
    answer_end = answer_start + len(answer_text)
    offsets = window.encoding.offsets
    context = np.flatnonzero(window.in_context)
    if not len(context) or offsets[context[0]][0] > answer_start or offsets[context[-1]][1] < answer_end:
        return None
    first = next(t for t in context if offsets[t][1] > answer_start)
    last = next(t for t in reversed(context) if offsets[t][0] < answer_end)
    return (int(first), int(last)) if first <= last else None


def gold_spans(gold: dict, all_answers: bool) -> list[tuple[int, str]]:
    """The (answer_start, text) targets of one question: the first answer, or each distinct one in order."""
    spans = list(zip(gold["answer_start"], gold["text"]))
    return list(dict.fromkeys(spans)) if all_answers else spans[:1]


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def without_answer_sentences(context: str, gold: dict) -> str | None:
    """The context without every sentence that overlaps a gold answer, or None when nothing is left or a gold
    text still appears in what is left (then the question might still be answerable)."""
    answers = [(start, start + len(text)) for start, text in zip(gold["answer_start"], gold["text"])]
    kept, position = [], 0
    for sentence in SENTENCE_END.split(context):
        start = context.index(sentence, position)
        position = start + len(sentence)
        if not any(start < answer_end and answer_start < position for answer_start, answer_end in answers):
            kept.append(sentence)
    remainder = " ".join(kept)
    if not remainder or any(text.lower() in remainder.lower() for text in gold["text"]):
        return None
    return remainder


def training_windows(tokenizer, dataset, recipe: Recipe):
    """(windows, labels [(start, end)]) of every question: [CLS] for unanswerable, answer-missing windows dropped.
    With `recipe.all_answers` a window holding several distinct gold spans appears once per span; with
    `recipe.deletion_negatives` each answerable question also appears with its answer's sentences deleted, as [CLS]."""
    from .squad.preprocess import WindowConfig, encode

    config = WindowConfig(recipe.max_seq_len, recipe.doc_stride)
    questions, contexts, answers = list(dataset["question"]), list(dataset["context"]), dataset["answers"]
    windows = encode(tokenizer, questions, contexts, config)
    kept, labels = [], []
    for window in windows:
        gold = answers[window.question]
        if not gold["text"]:
            kept.append(window)
            labels.append((0, 0))
            continue
        for answer_start, answer_text in gold_spans(gold, recipe.all_answers):
            span = answer_tokens(window, answer_start, answer_text)
            if span is not None:
                kept.append(window)
                labels.append(span)
    if not kept:
        raise UserError("no training window holds a labelled answer: is the data SQuAD v2?")
    if recipe.deletion_negatives:
        negatives = [(question, remainder) for question, context, gold in zip(questions, contexts, answers)
                     if gold["text"] and (remainder := without_answer_sentences(context, gold)) is not None]
        if negatives:
            extra = encode(tokenizer, [q for q, _ in negatives], [c for _, c in negatives], config)
            kept += extra
            labels += [(0, 0)] * len(extra)
    return kept, labels


def epoch_batches(windows, labels, batch_size: int, rng: np.random.Generator):
    """Seeded, length-bucketed training batches: (input_ids, token_type_ids, attention_mask, starts, ends)."""
    from .squad.preprocess import bucketed_batches

    order = rng.permutation(len(windows))
    pool = batch_size * POOL_BATCHES
    batches = []
    for first in range(0, len(order), pool):
        chosen = order[first:first + pool]
        for batch in bucketed_batches([windows[i] for i in chosen], batch_size):
            rows = len(batch.windows)  # drop the padding rows that fill the last batch
            spans = torch.tensor([labels[chosen[i]] for i in batch.windows])
            batches.append((batch.input_ids[:rows], batch.token_type_ids[:rows], batch.attention_mask[:rows],
                            spans[:, 0], spans[:, 1]))
    return [batches[i] for i in rng.permutation(len(batches))]


def load_training_data(data: str):
    """The questions to train from: a SQuAD-format file or, with 'hub', rajpurkar/squad_v2 train."""
    from .squad.data import HUB_DATASET, hub_reachable, read_hub, read_squad_file

    if data == "hub":
        if not hub_reachable(HUB_DATASET, "dataset"):
            raise UserError(f"--data hub: {HUB_DATASET} cannot be reached; pass a SQuAD-format JSON file")
        return read_hub("train")
    return read_squad_file(data)


# --------------------------------------------------------------------------------------------- model

def base_model(spec: str, seed: int):
    """(BertForQuestionAnswering in train mode, tokenizer, base fingerprint) from a --model value."""
    from transformers import BertForQuestionAnswering
    from transformers.utils import logging as hf_logging

    from .sources import OFFLINE_MODELS, resolve_model

    source = resolve_model(spec)
    if spec in OFFLINE_MODELS or spec.startswith("large-random-"):
        model = source.hf_model()  # the same seeded QA head every run
    else:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a new QA head is expected; its "newly initialized" report is noise
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = BertForQuestionAnswering.from_pretrained(str(source.tokenizer_dir))
        finally:
            hf_logging.set_verbosity(verbosity)
    return model.train(), source.tokenizer, source.fingerprint


def _optimizer(model, recipe: Recipe):
    if recipe.freeze_word_embeddings:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)


@torch.inference_mode()
def validate(model, tokenizer, dataset, recipe: Recipe, dtype) -> dict:
    """Official SQuAD v2 scores of the best non-null spans and na_probs, best_f1_thresh included."""
    from .squad.data import answers_by_id
    from .squad.metric import evaluate
    from .squad.pipeline import run_model
    from .squad.postprocess import SpanSearch, postprocess
    from .squad.preprocess import WindowConfig, bucketed_batches, encode

    device = model_device(model)

    def forward(input_ids, token_type_ids, attention_mask):
        with autocast(device.type, dtype):
            out = model(input_ids=input_ids.to(device), token_type_ids=token_type_ids.to(device),
                        attention_mask=attention_mask.to(device))
        return out.start_logits.float().cpu(), out.end_logits.float().cpu()

    model.eval()
    contexts = list(dataset["context"])
    windows = encode(tokenizer, list(dataset["question"]), contexts, WindowConfig(recipe.max_seq_len, recipe.doc_stride))
    logits = run_model(forward, bucketed_batches(windows, recipe.batch_size))
    model.train()
    answers = postprocess(windows, logits, contexts, SpanSearch())
    ids = list(dataset["id"])
    return evaluate(answers_by_id(dataset), {i: a.text for i, a in zip(ids, answers)},
                    {i: a.na_prob for i, a in zip(ids, answers)})


def train(model, tokenizer, train_set, validation_set, recipe: Recipe, max_minutes: float | None = None,
          progress: bool = True) -> dict:
    """Fine-tune `model` in place, on the device it is on; it ends holding the best validated epoch.
    Returns the training log."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    device = model_device(model)
    dtype = autocast_dtype(recipe.precision, device.type)
    windows, labels = training_windows(tokenizer, train_set, recipe)
    steps_per_epoch = math.ceil(len(windows) / recipe.batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    optimizer = _optimizer(model, recipe)
    schedule = get_linear_schedule_with_warmup(optimizer, round(recipe.warmup * total_steps), total_steps)
    deadline = time.monotonic() + 60 * max_minutes if max_minutes else math.inf

    log = {"windows": len(windows), "steps": 0, "planned_steps": total_steps, "epochs": [], "stopped_early": False,
           "precision": str(dtype or torch.float32).removeprefix("torch."), "device": device_name(device)}
    best_f1, best_state = -1.0, None
    started = time.monotonic()
    bar = tqdm(total=total_steps, unit="step", desc="finetune", disable=not progress)
    epoch = 0
    while log["steps"] < total_steps and not log["stopped_early"]:
        epoch += 1
        losses = []
        for batch in epoch_batches(windows, labels, recipe.batch_size, rng):
            input_ids, token_types, mask, starts, ends = (tensor.to(device) for tensor in batch)
            with autocast(device.type, dtype):
                loss = model(input_ids=input_ids, token_type_ids=token_types, attention_mask=mask,
                             start_positions=starts, end_positions=ends).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            log["steps"] += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-50:]):.3f}")
            if log["steps"] >= total_steps:
                break
            if time.monotonic() > deadline:
                log["stopped_early"] = True
                break
        record = {"epoch": epoch, "steps": log["steps"], "mean_loss": float(np.mean(losses)),
                  "minutes": (time.monotonic() - started) / 60}
        if len(validation_set):
            scores = validate(model, tokenizer, validation_set, recipe, dtype)
            record.update({k: scores[k] for k in ("f1", "exact", "best_f1", "best_f1_thresh", "HasAns_f1", "NoAns_exact")
                           if k in scores})
            if scores["best_f1"] > best_f1:
                best_f1, best_state = scores["best_f1"], {k: v.clone() for k, v in model.state_dict().items()}
                log["best_epoch"], log["na_prob_threshold"] = epoch, scores["best_f1_thresh"]
        log["epochs"].append(record)
        bar.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    log["minutes"] = (time.monotonic() - started) / 60
    return log


# ------------------------------------------------------------------------------------------- output

def fresh_output(out: str) -> Path:
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty directory; choose a new one")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {path.parent}: {error.strerror}") from None
    return path


def save(model, tokenizer, out: Path, card: dict) -> None:
    """Write the HF directory beside `out` and move it into place whole, so a crash leaves nothing half-written."""
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        write_json(staging / MODEL_CARD, card)
        os.chmod(staging, 0o755)
        if out.exists():
            out.rmdir()  # empty, checked by fresh_output
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def model_card(base: str, base_fingerprint: str, data: str, recipe: Recipe, train_set, validation_set, log: dict) -> dict:
    """The `bertl11.json` of a fine-tune: its base (and the base's own card, for a later stage), data, recipe,
    split, null-score threshold and training log."""
    base_card = read_model_card(Path(base)) if Path(base).is_dir() else {}
    return {"base": base, "base_fingerprint": base_fingerprint, "base_card": base_card or None,
            "data": str(data), "recipe": asdict(recipe),
            "train_questions": len(train_set), "validation_articles": sorted(set(validation_set["title"])),
            "na_prob_threshold": log.get("na_prob_threshold"), "log": log}


def read_model_card(directory: Path) -> dict:
    """A fine-tuned directory's `bertl11.json`, or {} when it has none."""
    path = Path(directory) / MODEL_CARD
    if not path.is_file():
        return {}
    from .files import read_json

    card = read_json(path, "model card")
    if not isinstance(card, dict):
        raise UserError(f"{path} should hold a JSON object")
    return card


def lineage(card: dict) -> list[dict]:
    """The fine-tuning stages behind a model card, first stage first (a stage may start from an earlier output)."""
    stages = [card]
    while stages[0].get("base_card"):
        stages.insert(0, stages[0]["base_card"])
    return stages


def root(card: dict) -> tuple[str | None, str | None]:
    """(name, fingerprint) of the weights a model's first fine-tuning stage started from."""
    first = lineage(card)[0]
    return first.get("base"), first.get("base_fingerprint")
