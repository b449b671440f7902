"""The training loop: a base model and its optimiser, the epochs, and validation after each through the SQuAD pipeline.

The model ends holding its best validated epoch (the best official best_f1 on the validation articles), and the
log records that epoch's null-score threshold (best_f1_thresh).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .data import epoch_batches, training_windows
from .recipe import Recipe, autocast, autocast_dtype


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def device_name(device: torch.device) -> str:
    """What the model card records as the training device: `cpu`, or the GPU's name."""
    return f"cuda {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


def base_model(spec: str, seed: int):
    """(BertForQuestionAnswering in train mode, tokenizer, base fingerprint) from a --model value."""
    from transformers import BertForQuestionAnswering
    from transformers.utils import logging as hf_logging

    from ..sources import OFFLINE_MODELS, resolve_model

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


@dataclass
class PipelineModel:
    """An HF `BertForQuestionAnswering` as `squad.pipeline.run_pipeline` runs a model: its tokenizer, shape and
    device, and a call that returns float32 CPU logits, computed in the training precision (`dtype`, autocast's).
    It ships no null-score threshold of its own: run it with use_model_threshold=False."""

    model: object
    tokenizer: object
    dtype: torch.dtype | None

    @property
    def shape(self):
        from ..config import BertShape

        return BertShape.from_hf(self.model.config)

    @property
    def device(self) -> str:
        return model_device(self.model).type

    def __call__(self, input_ids, token_type_ids, attention_mask):
        device = model_device(self.model)
        with autocast(device.type, self.dtype):
            out = self.model(input_ids=input_ids.to(device), token_type_ids=token_type_ids.to(device),
                             attention_mask=attention_mask.to(device))
        return out.start_logits.float().cpu(), out.end_logits.float().cpu()


@torch.inference_mode()
def validate(model, tokenizer, dataset, recipe: Recipe, dtype) -> dict:
    """Official SQuAD v2 scores of the best non-null spans and na_probs (the pipeline's default span search, no
    threshold), best_f1_thresh included, on the recipe's windows and bucketed batches."""
    from ..squad.data import answers_by_id
    from ..squad.metric import evaluate
    from ..squad.pipeline import run_pipeline
    from ..squad.preprocess import WindowConfig

    model.eval()
    run = run_pipeline(PipelineModel(model, tokenizer, dtype), dataset["question"], dataset["context"],
                       batch_size=recipe.batch_size, window_config=WindowConfig(recipe.max_seq_len, recipe.doc_stride),
                       bucket=True, use_model_threshold=False)
    model.train()
    ids = list(dataset["id"])
    return evaluate(answers_by_id(dataset), {i: a.text for i, a in zip(ids, run.answers)},
                    {i: a.na_prob for i, a in zip(ids, run.answers)})


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
