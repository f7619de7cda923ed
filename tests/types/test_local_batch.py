"""A batch of local edits read from the document carries what merging its updates carries.

``LocalBatch.take`` reads the batch's structs from the document (a diff against a state vector
holding this client's clock where the batch began) and puts the batch's own deletions in place
of the document's whole delete set. Checked against merging the batch's updates, with remote
updates (structs and deletions of another client) arriving between and inside batches, edits
of texts (non-ASCII too, formatting), maps and arrays, and deletions of both clients' items:
a replica fed the batches ends equal to the document after every batch, and each batch holds
this client's structs alone and exactly the batch's deletions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encspaces import local_batch
from encspaces.local_batch import LocalBatch, merged
from encspaces.state_vector import read_deletions, read_state, read_varuint

PIECES = ["a", "xyz", "é", "中文", "😀", " ", "\n"]
STEP = st.tuples(st.sampled_from(["ins", "ins", "del", "fmt", "map", "arr", "arr-del", "remote", "cut"]),
                 st.integers(0, 10**6), st.integers(1, 8), st.sampled_from(PIECES))


def deletions(update: bytes, state: bytes) -> set[tuple[int, int]]:
    """Every (client, clock) the update's delete set names (read through a diff holding no struct)."""
    diff = pycrdt.get_update(update, state)
    structs, pos = read_varuint(diff, 0)
    assert structs == 0
    ranges, pos = read_deletions(diff, pos)
    assert pos == len(diff)
    return {(client, c) for client, clock, length in ranges for c in range(clock, clock + length)}


def content(doc: pycrdt.Doc[Any]) -> tuple[Any, ...]:
    text = doc.get("t", type=pycrdt.Text)
    return (text.diff(), doc.get("m", type=pycrdt.Map).to_py(), doc.get("a", type=pycrdt.Array).to_py(),
            read_state(doc.get_state()), deletions(doc.get_update(doc.get_state()), doc.get_state()))


class Local:
    """A document whose local updates go to a LocalBatch (as ``Space`` keeps them)."""

    def __init__(self) -> None:
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.text = self.doc.get("t", type=pycrdt.Text)
        self.map = self.doc.get("m", type=pycrdt.Map)
        self.array = self.doc.get("a", type=pycrdt.Array)
        self.batch = LocalBatch()
        self.remote = False
        self._sub = self.doc.observe(lambda event: None if self.remote else self.batch.add(event.update))
        self.batch.begin_at(self.doc)

    def apply_remote(self, update: bytes) -> None:
        self.remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self.remote = False


@contextmanager
def counting_merges() -> Iterator[list[int]]:
    """Each batch merged instead of read from the document adds one to the list; every batch
    may be read (``READ_FROM`` 1: the tests' batches are small)."""
    fallbacks: list[int] = []
    merge_within, read_from = local_batch._merged_within, local_batch.READ_FROM

    def counted(updates: list[bytes], limit: int) -> list[bytes]:
        fallbacks.append(1)
        return merge_within(updates, limit)

    local_batch._merged_within, local_batch.READ_FROM = counted, 1
    try:
        yield fallbacks
    finally:
        local_batch._merged_within, local_batch.READ_FROM = merge_within, read_from


@pytest.mark.parametrize("limit", [1 << 20, 64])
@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, max_size=60))
def test_a_batch_read_from_the_document_holds_what_merging_it_holds(
    limit: int, steps: list[tuple[str, int, int, str]]
) -> None:
    """A batch during which a remote update arrived is merged (the diff cannot tell a remote
    struct from one a local transaction imported); so is one over a limit of 64 bytes (split
    as before). The next batch is read from the document again."""
    with counting_merges() as fallbacks:
        replay(limit, steps, fallbacks)


def replay(limit: int, steps: list[tuple[str, int, int, str]], fallbacks: list[int]) -> None:
    local, peer = Local(), pycrdt.Doc()
    peer_text, peer_map = peer.get("t", type=pycrdt.Text), peer.get("m", type=pycrdt.Map)
    replica: pycrdt.Doc[Any] = pycrdt.Doc()  # takes the batches, and the peer's updates as local does
    peer_sent = peer.get_state()
    remote_in_batch = False
    for op, where, size, piece in [*steps, ("cut", 0, 0, "")]:
        length = len(local.text)  # (UTF-8 bytes, as pycrdt counts)
        text = str(local.text)
        starts = [len(text[:i].encode()) for i in range(len(text) + 1)]  # character boundaries
        if op == "ins":
            local.text.insert(starts[where % len(starts)], piece)
        elif op == "del" and length:
            i = where % (len(starts) - 1)
            j = min(i + size, len(starts) - 1)
            del local.text[starts[i] : starts[j]]
        elif op == "fmt" and length:
            i = where % (len(starts) - 1)
            local.text.format(starts[i], starts[min(i + size, len(starts) - 1)], {"b": where % 2 == 0 or None})
        elif op == "map":
            local.map[f"k{where % 4}"] = piece
        elif op == "arr":
            local.array.append(piece)
        elif op == "arr-del" and len(local.array):
            del local.array[where % len(local.array)]
        elif op == "remote":  # the peer edits what it has of local's text (inserts, deletes) and its own map
            theirs = str(peer_text)
            if where % 3:
                peer_text.insert(len(theirs[: where % (len(theirs) + 1)].encode()), piece)
            else:
                peer_map["p"] = where
            if theirs and where % 2:
                del peer_text[0 : len(theirs[: min(size, len(theirs))].encode())]
            update = peer.get_update(peer_sent)
            peer_sent = peer.get_state()
            local.apply_remote(update)
            replica.apply_update(update)
            remote_in_batch = True
        elif op == "cut":
            updates = list(local.batch.updates)
            before = local.doc.get_state()
            taken = len(fallbacks)
            payloads = local.batch.take(local.doc, limit)
            assert (payloads == []) == (updates == [])
            if not updates:
                continue
            for payload in payloads:
                replica.apply_update(payload)
            assert content(replica) == content(local.doc)
            if len(fallbacks) == taken:  # read from the document: this client's structs, the batch's deletions
                (payload,) = payloads
                assert set(read_state(pycrdt.get_state(payload))) <= {local.doc.client_id}
                assert deletions(payload, before) == deletions(merged(updates), before)
            elif limit > 1 << 10:
                assert remote_in_batch
            remote_in_batch = False
            peer.apply_update(local.doc.get_update(peer.get_state()))  # the peer catches up
            peer_sent = peer.get_state()


def test_a_batch_cut_inside_a_transaction_is_merged_and_the_next_one_read_again() -> None:
    """Inside an open transaction the batch's own update is not in it yet: merge what is, and
    read the next batch from the document once no transaction is open."""
    with counting_merges() as fallbacks:
        inside_a_transaction(fallbacks)


def inside_a_transaction(fallbacks: list[int]) -> None:
    local = Local()
    replica: pycrdt.Doc[Any] = pycrdt.Doc()
    local.text.insert(0, "héllo")
    with local.doc.transaction():
        local.text.insert(0, ">")
        for payload in local.batch.take(local.doc, 1 << 20):  # "héllo" alone: the ">" is not committed
            replica.apply_update(payload)
    assert fallbacks == [1] and str(replica.get("t", type=pycrdt.Text)) == "héllo"
    local.text.insert(1, "!")
    for payload in local.batch.take(local.doc, 1 << 20):  # start unknown: merged, then known again
        replica.apply_update(payload)
    assert fallbacks == [1, 1]
    del local.text[0:1]
    for payload in local.batch.take(local.doc, 1 << 20):
        replica.apply_update(payload)
    assert fallbacks == [1, 1] and content(replica) == content(local.doc)
    assert str(local.text) == "!héllo"


def test_someone_elses_structs_imported_in_a_local_transaction_are_carried() -> None:
    """An integration holding the pycrdt document may apply another document's update to it in
    a local transaction (an import): the batch holds that update, and the merge carries its
    structs to the others. The diff of this client's structs would leave them out: such a
    batch (another client's clock moved) is merged."""
    with counting_merges() as fallbacks:
        local, other = Local(), pycrdt.Doc()
        replica: pycrdt.Doc[Any] = pycrdt.Doc()
        local.text.insert(0, "mine ")
        for payload in local.batch.take(local.doc, 1 << 20):
            replica.apply_update(payload)
        for word in ("imported", "again"):  # a new client, then a known one whose clock moves
            sent = other.get_state()
            other.get("t", type=pycrdt.Text).insert(0, word)
            local.text.insert(0, ">")
            local.doc.apply_update(other.get_update(sent))  # local: the observer adds it to the batch
            for payload in local.batch.take(local.doc, 1 << 20):
                replica.apply_update(payload)
            assert content(replica) == content(local.doc)
            assert word in str(replica.get("t", type=pycrdt.Text))
        assert fallbacks == [1, 1]


def test_an_entry_carries_the_batchs_deletions_not_the_documents() -> None:
    """The diff from the document holds its whole delete set; a batch that deletes nothing must
    carry none (every entry would otherwise grow with the document's history)."""
    with counting_merges() as fallbacks:
        local = Local()
        local.text.insert(0, "hello world")
        del local.text[0:6]
        (first,) = local.batch.take(local.doc, 1 << 20)
        local.text.insert(0, "x")
        (second,) = local.batch.take(local.doc, 1 << 20)
    assert not fallbacks
    state = local.doc.get_state()
    assert len(deletions(first, state)) == 6
    assert deletions(second, state) == set() and second.endswith(b"\x00")
    assert len(second) < len(first)


def test_a_remote_update_between_batches_leaves_the_next_one_read() -> None:
    """Others' updates applied while no local edit waits: noting the start again after them
    (as ``Space`` does once it applied verified entries) keeps the next batch read."""
    with counting_merges() as fallbacks:
        local, other = Local(), pycrdt.Doc()
        replica: pycrdt.Doc[Any] = pycrdt.Doc()
        for word in ("one", "two", "three"):
            sent = other.get_state()
            other.get("t", type=pycrdt.Text).insert(0, word)
            update = other.get_update(sent)
            local.apply_remote(update)
            replica.apply_update(update)
            local.batch.begin_at(local.doc)
            local.text.insert(0, word.upper())
            for payload in local.batch.take(local.doc, 1 << 20):
                replica.apply_update(payload)
            assert content(replica) == content(local.doc)
        assert not fallbacks
