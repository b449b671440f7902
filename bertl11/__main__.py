"""`python -m bertl11 ...`, and so `torchrun --nproc-per-node N -m bertl11 squad ...` (`distributed.py`)."""

import sys

from .cli import main

sys.exit(main())
