"""bertl11: BERT-large SQuAD v2 question answering, the way Tenstorrent's metal_BERT_large_11 runs it."""

import logging

# torchao, which the fast path's int8 quantisation uses and transformers imports whenever it is installed, logs at
# import time: the CUDA kernels a CPU build cannot load, and torch's deprecation of how it registers two enums.
# Neither is actionable, and both would break the promise of one line on stderr for a user error.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

from .config import DEFAULT_RUN_CONFIG, RUN_CONFIGS, BertShape, RunConfig, get_run_config
from .errors import UserError
from .sources import DEFAULT_MODEL, ModelSource, resolve_model

__version__ = "0.1.0"


def __getattr__(name: str):
    """`QAModel` on first use: it needs torch, whose import takes seconds that `bertl11 app`, `doctor --help` and
    the other commands that do not run a model should not wait for."""
    if name == "QAModel":
        from .runtime import QAModel

        return QAModel
    raise AttributeError(f"module 'bertl11' has no attribute {name!r}")

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_RUN_CONFIG", "RUN_CONFIGS", "BertShape", "ModelSource", "QAModel", "RunConfig",
    "UserError", "get_run_config", "resolve_model",
]
