"""Writing the shipped `minilm-squad2`: a fine-tune of the MiniLM base stored as a delta from it, with its manifest.

For each tensor training changed, the delta holds the change (fine-tuned - base) in bfloat16, and the new QA head
whole (`shipped.py` says why that keeps the rebuilt weights within ~1e-4). The manifest records the sha256 of the
delta and of the base's weights file, the null-score threshold, and the model's provenance: how each stage was
made, without the trainer's paths. Build it from a `bertl11 finetune` (or `bertl11 soup`) output directory:

    python -m bertl11.training.delta out/minilm-squad2
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import UserError
from ..files import atomic_path, write_json
from .. import modelcard
from ..modelcard import ModelCard, lineage, root
from ..packaged import MINILM_PACKAGE, SHIPPED_DIRECTORY, minilm_state, minilm_weights
from ..shipped import DELTA_FILE, MANIFEST_FILE, NAME, WHOLE
from ..verified import sha256_file

TRAINING_KEYS = ("steps", "minutes", "best_epoch", "precision", "epochs", "na_prob_threshold")
VALIDATION_KEYS = ("exact", "f1", "HasAns_f1", "best_f1", "best_f1_thresh")


def provenance(card: ModelCard) -> dict:
    """How a model card's model was made, without the trainer's paths: its stages, first first. A stage is a
    fine-tuning run (its base, recipe and training log) or a soup (its ingredients' provenance and its scores)."""
    stages = []
    for number, stage in enumerate(lineage(card), 1):
        if stage.is_soup:
            stages.append({"soup": [provenance(ingredient) for ingredient in stage.soup],
                           "validation": {k: stage.validation[k] for k in VALIDATION_KEYS}})
        else:
            # A later stage started from the one before it; its --base was a directory on the trainer's machine.
            log = stage.log or {}
            stages.append({"base": stage.base if number == 1 else f"stage {number - 1}", "recipe": stage.recipe,
                           "training": {k: log[k] for k in TRAINING_KEYS if k in log}})
    return {"stages": stages}


def write_delta(finetuned: Path, directory: Path = SHIPPED_DIRECTORY) -> dict:
    """Store a fine-tuned MiniLM directory (from `bertl11 finetune --base minilm`, or a `bertl11 soup` of such)
    as delta + manifest."""
    from importlib.metadata import version

    import torch
    from safetensors.torch import load_file, save_file

    card = ModelCard.read(finetuned) or ModelCard()
    base, _ = root(card)
    if base != "minilm":
        raise UserError(f"{finetuned} was not fine-tuned from the minilm base (its {finetuned / modelcard.FILE} "
                        f"starts from {base!r})")
    if card.na_prob_threshold is None:
        raise UserError(f"{finetuned} has no validated null-score threshold; fine-tune with --validation-articles >= 1")
    trained = load_file(str(finetuned / "model.safetensors"))
    base_state = minilm_state()
    delta = {}
    for name, value in trained.items():
        if name.startswith(WHOLE):
            delta[name] = value.float().contiguous()
        elif name in base_state and not torch.equal(value.float(), base_state[name]):
            delta[name] = (value.float() - base_state[name]).to(torch.bfloat16).contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / DELTA_FILE) as temporary:
        save_file(delta, temporary)
        os.chmod(temporary, 0o644)  # save_file recreates the file private; this one ships
    record = {
        "name": NAME,
        "base_package": MINILM_PACKAGE,
        "base_version": version(MINILM_PACKAGE),
        "base_sha256": sha256_file(minilm_weights()),
        "delta_sha256": sha256_file(directory / DELTA_FILE),
        "na_prob_threshold": card.na_prob_threshold,
        "validation_articles": card.validation_articles,
        "train_questions": card.train_questions,
        **provenance(card),
    }
    write_json(directory / MANIFEST_FILE, record)
    return record


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bertl11.training.delta FINETUNED_DIR", file=sys.stderr)
        return 2
    try:
        record = write_delta(Path(argv[0]))
    except UserError as error:
        print(f"bertl11.training.delta: error: {error}", file=sys.stderr)
        return 2
    size = (SHIPPED_DIRECTORY / DELTA_FILE).stat().st_size
    print(f"wrote {SHIPPED_DIRECTORY / DELTA_FILE} ({size / 2**20:.1f} MiB), threshold {record['na_prob_threshold']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
