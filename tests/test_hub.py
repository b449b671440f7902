"""A hub model offline: `--model ORG/NAME` from an HF cache holding only a PyTorch checkpoint, or only safetensors.

No hub is reachable here, so each test builds the cache the way huggingface_hub lays it out
(`$HF_HOME/hub/models--ORG--NAME/{refs/main, snapshots/<commit>/...}`) and runs bertl11 in a new process with
HF_HOME pointing at it and HF_HUB_OFFLINE=1 (huggingface_hub reads both when it is imported).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from bertl11.hub import WEIGHT_FORMATS, weight_format
from bertl11.packaged import DEMO_INPUT, minilm_dir
from bertl11.sources import resolve_model
from conftest import run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.mark.parametrize("files, wanted", [
    (["config.json", "model.safetensors", "pytorch_model.bin"], "*.safetensors"),
    (["config.json", "pytorch_model.bin", "tf_model.h5"], "pytorch_model*.bin"),
    (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "pytorch_model-00001-of-00002.bin"],
     "*.safetensors"),
    (["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"], "pytorch_model*.bin"),
    (["config.json", "tf_model.h5"], None),
])
def test_one_weight_format_is_downloaded_safetensors_first(files, wanted):
    assert weight_format(files) == wanted
    assert wanted is None or wanted in WEIGHT_FORMATS


def hub_cache(home, repo: str, weights: str):
    """An HF cache under `home` holding `repo` (the seeded tiny QA model and the uncased tokenizer) with its weights
    as `weights`: "safetensors" or "bin". Returns the model's state dict."""
    model = resolve_model("tiny").hf_model()
    organisation, name = repo.split("/")
    root = home / "hub" / f"models--{organisation}--{name}"
    snapshot = root / "snapshots" / COMMIT
    if weights == "safetensors":
        model.save_pretrained(str(snapshot))
    else:  # transformers 5 writes safetensors only; older releases and many hub repositories hold this instead
        model.config.save_pretrained(str(snapshot))
        torch.save(model.state_dict(), snapshot / "pytorch_model.bin")
    for file in TOKENIZER_FILES:
        if (minilm_dir() / file).is_file():
            shutil.copy(minilm_dir() / file, snapshot / file)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    written = {path.name for path in snapshot.iterdir()}
    assert ("model.safetensors" in written) == (weights == "safetensors")
    assert ("pytorch_model.bin" in written) == (weights == "bin")
    return model.state_dict()


LOAD = """
import json, sys
import torch
from bertl11.sources import resolve_model
source = resolve_model(sys.argv[1])
state = source.state_dict()
print(json.dumps({"files": sorted(p.name for p in source.tokenizer_dir.iterdir()),
                  "sums": {k: float(v.double().sum()) for k, v in state.items()}}))
"""


@pytest.mark.parametrize("weights", ["bin", "safetensors"])
def test_a_cached_hub_model_loads_offline(tmp_path, weights):
    repo = f"someone/tiny-qa-{weights}"
    state = hub_cache(tmp_path / "hf", repo, weights)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "BERTL11_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", LOAD, repo], capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # Exact sums (float64 of float32 values): a loader that dropped, renamed or rounded a tensor fails this.
    wanted = {k: float(v.double().sum()) for k, v in state.items() if k.startswith(("bert.", "qa_outputs."))}
    assert report["sums"] == wanted
    assert ("model.safetensors" in report["files"]) == (weights == "safetensors")

    inputs = tmp_path / "two.json"
    inputs.write_text(json.dumps(json.loads(DEMO_INPUT.read_text())[:2]))
    demo = run_cli("demo", "--model", repo, "--config", "FLOAT32", "--batch", "2", "--input", str(inputs), "--json",
                   env=env)
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["model"] == repo


def test_a_hub_model_in_neither_format_is_one_line(tmp_path):
    repo = "someone/no-weights"
    hub_cache(tmp_path / "hf", repo, "bin")
    snapshot = tmp_path / "hf" / "hub" / "models--someone--no-weights" / "snapshots" / COMMIT
    (snapshot / "pytorch_model.bin").unlink()
    result = run_cli("convert", "--model", repo, "--config", "FLOAT32",
                     env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "BERTL11_CACHE": str(tmp_path / "c")})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no model.safetensors or pytorch_model.bin" in result.stderr

