"""The Hugging Face hub: whether it answers, what its local cache holds, and the model and dataset downloads.

Every reach for the hub goes through here, so that offline runs fail fast in one place: `huggingface_hub` and
`datasets` retry for ~25 s when the network is down, so a download is only tried after `reachable` says yes
(or from the cache, which needs no network).
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from .errors import UserError

PROBE_SECONDS = 3.0


def reachable(repo_id: str, repo_type: str = "model", timeout: float = PROBE_SECONDS) -> bool:
    """Whether the hub answers for this model or dataset within `timeout` (False at once when HF_HUB_OFFLINE is
    set)."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=timeout)
    except Exception:  # any failure (DNS, timeout, HTTP error) means "not reachable"
        return False
    return True


def is_cached(model_id: str) -> bool:
    """Whether the model's files are already in the local HF cache (no network)."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(model_id, allow_patterns=["config.json"], local_files_only=True)
    except Exception:
        return False
    return (Path(path) / "config.json").is_file()


# A model snapshot: its config and tokenizer files, and one weight format: safetensors where the repository has it,
# else PyTorch's checkpoint (read with torch.load(weights_only=True)); never both, which would download it twice.
MODEL_FILES = ["config.json", "tokenizer*", "vocab.txt", "special_tokens_map.json"]
WEIGHT_FORMATS = ("*.safetensors", "pytorch_model*.bin")


def weight_format(files: list[str]) -> str | None:
    """The weight files' pattern to download from a repository holding `files`: the first of WEIGHT_FORMATS any
    file matches, or None."""
    return next((pattern for pattern in WEIGHT_FORMATS if any(fnmatch(name, pattern) for name in files)), None)


def model_snapshot(model_id: str, weights: bool = True) -> Path | None:
    """The local directory of a model's files (MODEL_FILES and, with `weights`, one weight format): from the HF
    cache, else downloaded when the hub answers; None when neither has it."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        cached = [*MODEL_FILES, *(WEIGHT_FORMATS if weights else ())]
        return Path(snapshot_download(model_id, allow_patterns=cached, local_files_only=True))
    except Exception:
        pass
    if not reachable(model_id):
        return None
    try:
        chosen = weight_format(HfApi().list_repo_files(model_id)) if weights else None
        return Path(snapshot_download(model_id, allow_patterns=[*MODEL_FILES, *([chosen] if chosen else [])],
                                      etag_timeout=5))
    except Exception:
        return None


def dataset_split(dataset_id: str, split: str):
    """A split of a hub dataset (`datasets.load_dataset`, through its cache), or a one-line `UserError`."""
    from datasets import load_dataset

    try:
        return load_dataset(dataset_id, split=split)
    except Exception as error:  # datasets raises many kinds (ConnectionError, FileNotFoundError, HfHubHTTPError...)
        raise UserError(f"cannot load {dataset_id} from the hub: {type(error).__name__}: {error}") from None
