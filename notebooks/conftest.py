"""nbval runs of the notebooks check their stored outputs, which were made with the model each notebook pins in its
constants cell: a `BERTL11_MODEL` set in the shell (which a reader may use to try another model) would change them,
so the test run removes it before any notebook kernel starts."""

import os

os.environ.pop("BERTL11_MODEL", None)
