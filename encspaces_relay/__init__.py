"""The encspaces relay: stores and fans out each space's signed, encrypted log, trusted with nothing.

It logs under ``relay.*`` (docs/logging.md); ``encspaces-relay`` configures the output.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
