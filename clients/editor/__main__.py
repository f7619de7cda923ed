"""``python -m clients.editor SPACE [DOC]``: the same as ``encspaces edit SPACE [DOC]``."""

import sys

from encspaces.cli import main

if __name__ == "__main__":
    sys.exit(main(["edit", *sys.argv[1:]]))
