"""``python -m minidiff.training {train,sample} ...``: see :mod:`minidiff.training.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
