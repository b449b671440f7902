"""bertl11: BERT-large SQuAD v2 question answering, the way Tenstorrent's metal_BERT_large_11 runs it."""

from .config import DEFAULT_RUN_CONFIG, RUN_CONFIGS, BertShape, RunConfig, get_run_config
from .errors import UserError
from .runtime import QAModel
from .sources import DEFAULT_MODEL, ModelSource, resolve_model

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_MODEL", "DEFAULT_RUN_CONFIG", "RUN_CONFIGS", "BertShape", "ModelSource", "QAModel", "RunConfig",
    "UserError", "get_run_config", "resolve_model",
]
