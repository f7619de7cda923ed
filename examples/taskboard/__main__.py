"""``python -m examples.taskboard --help``."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
