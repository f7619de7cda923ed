"""When keys rotate and when devices forget them: the pure half of the space's policy.

Forward secrecy comes from forgetting: an epoch key deleted from every device cannot decrypt
its entries any more, whoever later obtains a device or the relay's database. Rotation bounds
how much one key protects; retention bounds how long an old one survives.
"""

from __future__ import annotations

from .log_state import LogState


def retired_epochs(state: LogState, held: set[int], now_ms: int) -> set[int]:
    """Epochs among ``held`` that the policy says this device must no longer keep a key for."""
    policy = state.policy
    retired: set[int] = set()
    if policy.retain_epochs is not None:
        retired |= {epoch for epoch in held if epoch < state.epoch - policy.retain_epochs}
    if policy.retain_seconds is not None:
        for epoch in held:
            ended = state.epoch_started.get(epoch + 1)
            if epoch < state.epoch and ended is not None and now_ms - ended > policy.retain_seconds * 1000:
                retired.add(epoch)
    return retired


def rotation_due(state: LogState, now_ms: int) -> bool:
    policy = state.policy
    if policy.rotate_entries is not None and state.entries_in_epoch >= policy.rotate_entries:
        return True
    started = state.epoch_started.get(state.epoch)
    return policy.rotate_seconds is not None and started is not None and \
        now_ms - started >= policy.rotate_seconds * 1000
