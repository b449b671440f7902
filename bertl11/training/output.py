"""A trained model's output directory: a new one, written whole (the HF files and the model card) or not at all."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..modelcard import ModelCard
from ..verified import staged_directory
from .recipe import Recipe


def fresh_output(out: str) -> Path:
    """`--out` as a path that holds nothing yet (absent or an empty directory), its parent created."""
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty directory; choose a new one")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {path.parent}: {error.strerror}") from None
    return path


def save(model, tokenizer, out: Path, card: ModelCard) -> None:
    """Write the HF directory beside `out` and move it into place whole, so a crash leaves nothing half-written."""
    with staged_directory(out, mode=0o755) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        card.write(staging)


def finetune_card(base: str, base_fingerprint: str, data: str, recipe: Recipe, train_set, validation_set,
                  log: dict) -> ModelCard:
    """The card of a fine-tune: its base (and the base's own card, for a later stage), data, recipe, split,
    null-score threshold and training log."""
    return ModelCard(base=base, base_fingerprint=base_fingerprint, base_card=ModelCard.read(Path(base)),
                     data=str(data), recipe=asdict(recipe), train_questions=len(train_set),
                     validation_articles=sorted(set(validation_set["title"])),
                     na_prob_threshold=log.get("na_prob_threshold"), log=log)
