"""The ``encspaces`` command: this device's identity, the spaces it knows, and what is in them.

A client of the SDK (``encspaces``), like the editor (``encspaces_clients.editor``), which it opens for
``encspaces edit`` when the ``editor`` extra is installed. One module per command group:
``identity`` (init, whoami), ``spaces`` (create, join, spaces, leave, forget), ``membership``
(members, add, remove, set-role, rotate-key, invite, invites, revoke-invite), ``content`` (edit,
cat), ``verification`` (log, verify, safety-code, evidence) and ``files``; the shared plumbing is in
``home`` (the home folder and its list of spaces), ``errors`` (exit codes, one-line errors),
``output`` and ``connecting`` (opening a space, failing fast on a relay that refuses); the
parser and ``main`` in ``main``.

Defaults live in one folder, the *home* (``--home``, else ``$ENCSPACES_HOME``, else
``$XDG_DATA_HOME/encspaces``, else ``~/.local/share/encspaces``):

- ``identity.key``: this device's identity (``--identity`` / ``$ENCSPACES_IDENTITY``);
- ``spaces.json``: the spaces this device knows, by local name: space id, relay URL, data folder;
- ``data/``: each space's local store, under ``data/<space id hex>/`` (``--data-dir`` /
  ``$ENCSPACES_DATA``).

Every failure prints one line on stderr that says what went wrong and what to do (a traceback
only with ``--debug``), and the exit code tells scripts which kind of failure it was
(``encspaces_clients.cli.errors.EXIT_*``).
"""
