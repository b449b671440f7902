"""The QA app's page as Voila serves it: `bertl11 app` runs Voila on `data/qa_app.ipynb`, whose kernel calls
`page_from_environment` for a `widget.QAPage`.

Voila runs the notebook in a fresh kernel for each visitor and shows only its widgets. The kernel learns the
model and config from the environment, so the server needs no arguments of ours.
"""

from __future__ import annotations

import os
from pathlib import Path

from .sources import OFFLINE_DEFAULT

APP_NOTEBOOK = Path(__file__).parent / "data" / "qa_app.ipynb"
MODEL_VARIABLE, CONFIG_VARIABLE = "BERTL11_APP_MODEL", "BERTL11_APP_CONFIG"


def page_from_environment():
    """What the app notebook shows: a `QAPage` for the model and config `bertl11 app` was given, loading them."""
    from .config import DEFAULT_RUN_CONFIG
    from .widget import QAPage

    page = QAPage(default_model=os.environ.get(MODEL_VARIABLE, OFFLINE_DEFAULT),
                  default_config=os.environ.get(CONFIG_VARIABLE, DEFAULT_RUN_CONFIG))
    page.load()
    return page
