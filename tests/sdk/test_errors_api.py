"""Every bad input to the public API raises an EncspacesError that is also the builtin plain
Python code expects (``except KeyError`` keeps working for a missing row), and is refused
before anything changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import encspaces
from encspaces.core.identity import PublicIdentity, parse_member_id
from encspaces.core.invites import InviteLink
from encspaces.core.membership import Policy, Role
from encspaces.document import Document
from encspaces.errors import (
    ArgumentTypeError,
    EncspacesError,
    FileArgumentError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    MalformedIdError,
    MissingKeyError,
    ObjectKindError,
    QueryError,
    RowNotFoundError,
    UnsupportedTypeError,
    UnsupportedValueError,
)
from tests.support import RelayHandle


def _doc() -> Document:
    doc = Document(lambda update: None)
    text = doc.text("t", lambda: None)
    text.insert(0, "héllo")
    lst = doc.list("l", lambda: None)
    lst.extend([1, {"a": 1}, [2]])
    shared = doc.map("m", lambda: None)
    shared.update({"k": 1, "nested": {"x": 1}, "items": [1]})
    doc.table("tb", lambda: None).insert({"a": 1})
    return doc


Case = tuple[str, Callable[[Document], Any], type[EncspacesError], type[Exception]]

# (what, the call, the encspaces class, the builtin it must also be)
OBJECT_CASES: list[Case] = [
    # shared object names and kinds
    ("text name not str", lambda d: d.text(3, lambda: None), ArgumentTypeError, TypeError),  # type: ignore[arg-type]
    ("map opened as text", lambda d: d.text("m", lambda: None), ObjectKindError, TypeError),
    # text
    ("text insert non-str", lambda d: d.text("t", lambda: None).insert(0, 5), ArgumentTypeError, TypeError),
    ("text insert past end", lambda d: d.text("t", lambda: None).insert(99, "x"), IndexOutOfRangeError, IndexError),
    ("text index not int", lambda d: d.text("t", lambda: None).insert("0", "x"), ArgumentTypeError, TypeError),
    ("text delete too long", lambda d: d.text("t", lambda: None).delete(2, 10), IndexOutOfRangeError, IndexError),
    ("text length not int", lambda d: d.text("t", lambda: None).delete(0, "1"), ArgumentTypeError, TypeError),
    ("text format attrs not dict", lambda d: d.text("t", lambda: None).format(0, 1, ["b"]), ArgumentTypeError,
     TypeError),
    ("text lone surrogate", lambda d: d.text("t", lambda: None).insert(0, "\ud800"), UnsupportedValueError,
     ValueError),
    # list
    ("list index out of range", lambda d: d.list("l", lambda: None)[7], IndexOutOfRangeError, IndexError),
    ("list index not int", lambda d: d.list("l", lambda: None)["0"], ArgumentTypeError, TypeError),
    ("list pop out of range", lambda d: d.list("l", lambda: None).pop(9), IndexOutOfRangeError, IndexError),
    ("list value a set", lambda d: d.list("l", lambda: None).append({1}), UnsupportedTypeError, TypeError),
    ("list int too large", lambda d: d.list("l", lambda: None).append(2**60), UnsupportedValueError, ValueError),
    ("list nan", lambda d: d.list("l", lambda: None).append(float("nan")), UnsupportedValueError, ValueError),
    ("list get_map on int", lambda d: d.list("l", lambda: None).get_map(0), ObjectKindError, TypeError),
    ("list get_list on map", lambda d: d.list("l", lambda: None).get_list(1), ObjectKindError, TypeError),
    ("list extended slice", lambda d: d.list("l", lambda: None).__setitem__(slice(0, 3, 2), [1, 2]),
     InvalidArgumentError, ValueError),
    ("list index() absent", lambda d: d.list("l", lambda: None).index(42), InvalidArgumentError, ValueError),
    ("list remove() absent", lambda d: d.list("l", lambda: None).remove(42), InvalidArgumentError, ValueError),
    # map
    ("map missing key", lambda d: d.map("m", lambda: None)["nope"], MissingKeyError, KeyError),
    ("map key not str", lambda d: d.map("m", lambda: None)[1], ArgumentTypeError, TypeError),  # type: ignore[index]
    ("map del missing", lambda d: d.map("m", lambda: None).delete("nope"), MissingKeyError, KeyError),
    ("map pop missing", lambda d: d.map("m", lambda: None).pop("nope"), MissingKeyError, KeyError),
    ("map popitem empty", lambda d: d.map("empty", lambda: None).popitem(), MissingKeyError, KeyError),
    ("map dict key not str", lambda d: d.map("m", lambda: None).set("k", {1: 2}), UnsupportedTypeError, TypeError),
    ("map value bytes", lambda d: d.map("m", lambda: None).set("k", b"x"), UnsupportedTypeError, TypeError),
    ("map update bad args", lambda d: d.map("m", lambda: None).update(5), ArgumentTypeError, TypeError),
    ("map get_list on map", lambda d: d.map("m", lambda: None).get_list("nested"), ObjectKindError, TypeError),
    ("map get_map missing", lambda d: d.map("m", lambda: None).get_map("nope"), MissingKeyError, KeyError),
    # table
    ("table missing row", lambda d: d.table("tb", lambda: None)["nope"], RowNotFoundError, KeyError),
    ("table update missing", lambda d: d.table("tb", lambda: None).update("nope", {"a": 2}), RowNotFoundError,
     KeyError),
    ("table delete missing", lambda d: d.table("tb", lambda: None).delete("nope"), RowNotFoundError, KeyError),
    ("table row not dict", lambda d: d.table("tb", lambda: None).insert([1]), ArgumentTypeError, TypeError),
    ("table value unsupported", lambda d: d.table("tb", lambda: None).insert({"a": object()}), UnsupportedTypeError,
     TypeError),
    ("table bad query", lambda d: d.table("tb", lambda: None).query({"a": {"~": 1}}), QueryError, ValueError),
    ("table bad order", lambda d: d.table("tb", lambda: None).query(order_by=3), QueryError, ValueError),
]

PURE_CASES: list[tuple[str, Callable[[], Any], type[EncspacesError], type[Exception]]] = [
    ("role unknown", lambda: Role("owner"), InvalidArgumentError, ValueError),
    ("role not str", lambda: Role(3), ArgumentTypeError, ValueError),
    ("policy negative", lambda: Policy(rotate_entries=0), InvalidArgumentError, ValueError),
    ("policy not int", lambda: Policy(retain_seconds=1.5), ArgumentTypeError, TypeError),  # type: ignore[arg-type]
    ("member id garbage", lambda: parse_member_id("not an id!"), MalformedIdError, ValueError),
    ("member id short", lambda: parse_member_id("AAAA"), MalformedIdError, ValueError),
    ("member id not str", lambda: parse_member_id(b"x"), ArgumentTypeError, TypeError),  # type: ignore[arg-type]
    ("public identity garbage", lambda: PublicIdentity.parse("esid1.abc"), MalformedIdError, ValueError),
    ("public identity typo", lambda: PublicIdentity.parse(_typo(str(encspaces.Identity.generate().public))),
     MalformedIdError, ValueError),
    ("public identity not str", lambda: PublicIdentity.parse(None), ArgumentTypeError, TypeError),  # type: ignore[arg-type]
    ("invite link garbage", lambda: InviteLink.parse("esinv1.zzzz"), MalformedIdError, ValueError),
    ("invite link not a link", lambda: InviteLink.parse("https://example.org"), MalformedIdError, ValueError),
    ("connect bad space id", lambda: encspaces.connect("ws://127.0.0.1:1", encspaces.Identity.generate(), "x!",
                                                       data_dir="."), MalformedIdError, ValueError),
]


def _typo(text: str) -> str:
    last = text[-1]
    return text[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize(("what", "call", "error", "builtin"), OBJECT_CASES, ids=[c[0] for c in OBJECT_CASES])
def test_shared_object_errors(
    what: str, call: Callable[[Document], Any], error: type[EncspacesError], builtin: type[Exception]
) -> None:
    doc = _doc()
    before = doc.state()
    with pytest.raises(error) as caught:
        call(doc)
    assert isinstance(caught.value, builtin)
    assert isinstance(caught.value, EncspacesError)
    assert doc.state() == before  # refused before the document changed


@pytest.mark.parametrize(("what", "call", "error", "builtin"), PURE_CASES, ids=[c[0] for c in PURE_CASES])
def test_argument_errors(what: str, call: Callable[[], Any], error: type[EncspacesError],
                         builtin: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        call()
    assert isinstance(caught.value, builtin)


SpaceCase = tuple[str, Callable[[encspaces.Space], Awaitable[Any] | Any], type[EncspacesError], type[Exception]]

SPACE_CASES: list[SpaceCase] = [
    ("add_member bad role", lambda s: s.add_member(encspaces.Identity.generate().public, "owner"),
     InvalidArgumentError, ValueError),
    ("add_member bad identity", lambda s: s.add_member("esid1.nope"), MalformedIdError, ValueError),
    ("add_member not an identity", lambda s: s.add_member(42), ArgumentTypeError, TypeError),
    ("set_role bad role", lambda s: s.set_role(s.identity.member_id, "boss"), InvalidArgumentError, ValueError),
    ("set_role bad member id", lambda s: s.set_role("???", "reader"), MalformedIdError, ValueError),
    ("set_role member not str", lambda s: s.set_role(7, "reader"), ArgumentTypeError, TypeError),
    ("remove_member bad id", lambda s: s.remove_member("AAAA"), MalformedIdError, ValueError),
    ("create_invite zero uses", lambda s: s.create_invite(uses=0), InvalidArgumentError, ValueError),
    ("create_invite huge uses", lambda s: s.create_invite(uses=10**7), InvalidArgumentError, ValueError),
    ("create_invite bad role", lambda s: s.create_invite(role="root"), InvalidArgumentError, ValueError),
    ("revoke_invite garbage", lambda s: s.revoke_invite("###"), MalformedIdError, ValueError),
    ("revoke_invite bad link", lambda s: s.revoke_invite("esinv1.abc"), MalformedIdError, ValueError),
    ("revoke_invite not str", lambda s: s.revoke_invite(None), ArgumentTypeError, TypeError),
    ("presence not a dict", lambda s: s.presence.set(["here"]), ArgumentTypeError, TypeError),
    ("presence not packable", lambda s: s.presence.set({"x": object()}), ArgumentTypeError, TypeError),
    ("presence too large", lambda s: s.presence.set({"x": "y" * 5000}), InvalidArgumentError, ValueError),
    ("files bad name", lambda s: s.files.put("", b"x"), FileArgumentError, ValueError),
    ("files name not str", lambda s: s.files.put(3, b"x"), ArgumentTypeError, TypeError),
    ("files long content type", lambda s: s.files.put("a", b"x", content_type="x" * 300), FileArgumentError,
     ValueError),
    ("space text name not str", lambda s: s.text(None), ArgumentTypeError, TypeError),
    ("space table as map", lambda s: s.map("tb"), ObjectKindError, TypeError),
    ("space missing row", lambda s: s.table("tb")["nope"], RowNotFoundError, KeyError),
    ("at seq not int", lambda s: s.at("1"), ArgumentTypeError, TypeError),
    ("history limit not int", lambda s: s.history(limit="5"), ArgumentTypeError, TypeError),
    ("history before not int", lambda s: s.history(before=1.5), ArgumentTypeError, TypeError),
    ("wait_for_seq not int", lambda s: s.wait_for_seq("3"), ArgumentTypeError, TypeError),
]


async def test_space_call_errors(relay: RelayHandle, tmp_path: Path) -> None:
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    try:
        space.table("tb").insert({"a": 1})
        await space.sync()
        seq, presence = space.seq, space.presence.state
        wrong = []
        for what, call, error, builtin in SPACE_CASES:
            try:
                result = call(space)
                if isinstance(result, Awaitable):
                    await result
            except Exception as exc:
                if not (isinstance(exc, error) and isinstance(exc, builtin)):
                    wrong.append(f"{what}: {type(exc).__name__}: {exc}")
            else:
                wrong.append(f"{what}: nothing raised")
        assert wrong == []
        await space.sync()
        assert space.error is None
        assert space.seq == seq  # nothing was published by a refused call
        assert space.invites == []
        assert space.presence.state == presence
    finally:
        await space.close()
