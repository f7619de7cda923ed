"""The protocol core: pure functions and state machines, shared by the relay and the SDK.

Bytes and dataclasses in, verified results or a specific ``encspaces.errors`` exception out.
Nothing here opens a socket, runs an event loop, touches a store or a CRDT: the relay
(``encspaces_relay/``) and the SDK (``encspaces/``) are the I/O edges around it, so both apply the very
same rules (``log_state.LogState``) and every rule is testable with bytes alone.
``tests/test_layering.py`` holds the import direction.
"""
