"""Character index <-> Yrs offset for a text, in O(log n) per edit.

Yrs (pycrdt 0.14) addresses a text in UTF-8 bytes: insert offsets, ``len`` and the retain /
delete counts of its events. The API counts Python characters (code points). Converting by
reading the whole text costs O(document) per keystroke, so ``TextIndex`` keeps a copy of the
text cut into chunks of at most ``MAX_CHUNK`` characters, with two Fenwick trees over the
chunks (characters and UTF-8 bytes per chunk). Finding a chunk is O(log chunks), converting
inside it O(chunk); an edit updates one chunk and the two trees. Splitting a chunk that grew
past the maximum rebuilds the trees from per-chunk counts in O(chunks) (no text is read);
that needs about ``MAX_CHUNK // 2`` inserted characters, so it stays small amortised.

An embed (a non-string item a peer or an integration put in the text; SharedText writes none)
is one position in the API and one unit in Yrs, as in Yjs. The copy holds ``EMBED``, a
character of one UTF-8 byte, in its place, so it counts like any ASCII character and every
conversion stays exact; ``str()`` of the Yrs text leaves embeds out and cannot be the copy
(``positions_text`` builds it from the text's runs instead).

Pure: strings in, offsets out; it knows nothing of pycrdt. ``SharedText`` updates it on every
local edit and, for remote updates, from the Yrs delta (``apply_delta``). A text with few
non-ASCII characters gets the lighter ``sparse_index.SparseIndex`` instead; both are
``Positions``, which follow a delta the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_CHUNK = 1024  # characters; a chunk is split in two when it grows past this

# Stands for one embed: one position and one UTF-8 byte, as Yrs counts an embed. Only its
# counts matter (nothing reads it back as text), so a NUL in the text itself is harmless.
EMBED = "\x00"


def positions_text(runs: Sequence[tuple[Any, Any]], text: str, length: int) -> str:
    """A text as positions count it: its characters, each embed as one ``EMBED``.

    ``runs``: the text's runs (pycrdt's ``Text.diff()``: content, attributes); ``text``: its
    characters alone (``str()``, which leaves every embed out); ``length``: its Yrs length
    (UTF-8 bytes, one per embed). O(document); only when an index is built.

    Yrs reports an embed that is itself a string (``insert_embed(i, "abc")``, which no Yjs
    client can write but a Yrs one can) in ``diff()`` exactly like text. When reading every
    string run as text does not add up to ``length``, the runs are aligned with ``text`` to
    tell which string runs are embeds (``_string_embeds``).
    """
    whole = "".join(content if isinstance(content, str) and content else EMBED for content, _ in runs)
    if _utf8(whole) == length:
        return whole
    embeds = _string_embeds([content for content, _ in runs], text)
    return "".join(EMBED if i in embeds or not isinstance(content, str) else content
                   for i, (content, _) in enumerate(runs))


def _string_embeds(contents: Sequence[Any], text: str) -> set[int]:
    """Which string runs are embeds: the runs read as text must spell ``text`` in order.

    Forward, the positions of ``text`` reachable after each run (a string run either spells
    the next characters or is an embed); backward, from the end of ``text``, a path through
    them, taking a run as text where it can. Raises ValueError when no reading spells it.
    """
    reach: list[set[int]] = [{0}]
    for content in contents:
        here = reach[-1]
        after = set(here)  # the run is an embed (a non-string always is)
        if isinstance(content, str) and content:
            after.update(p + len(content) for p in here if text.startswith(content, p))
        reach.append(after)
    if len(text) not in reach[-1]:
        raise ValueError("the text's runs do not spell its characters")
    embeds: set[int] = set()
    p = len(text)
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        if isinstance(content, str) and content and p - len(content) in reach[i] \
                and text.startswith(content, p - len(content)):
            p -= len(content)
        elif isinstance(content, str):
            embeds.add(i)
    return embeds


def _utf8(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


class _Fenwick:
    """Prefix sums over a list of non-negative ints with point updates."""

    __slots__ = ("_top", "_tree")

    def __init__(self, values: list[int]) -> None:
        n = len(values)
        tree = [0, *values]
        for i in range(1, n + 1):  # linear-time build
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self._tree = tree
        top = 1
        while top * 2 <= n:
            top *= 2
        self._top = top if n else 0

    def add(self, i: int, delta: int) -> None:
        tree = self._tree
        n = len(tree) - 1
        i += 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def prefix(self, i: int) -> int:
        """Sum of the first ``i`` values."""
        tree = self._tree
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def find(self, target: int) -> tuple[int, int]:
        """``(i, before)``: the first ``i`` whose prefix sum through ``i`` exceeds ``target`` (the
        last one when none does); ``before`` is the sum of the values before ``i``. ``target >= 0``."""
        tree = self._tree
        n = len(tree) - 1
        pos = 0
        before = 0
        step = self._top
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] <= target:
                pos = nxt
                target -= tree[nxt]
                before += tree[nxt]
            step >>= 1
        if pos >= n:  # target is at (or past) the end: the last value, at its end
            pos = n - 1
            before -= self._value(pos)
        return pos, before

    def _value(self, i: int) -> int:
        return self.prefix(i + 1) - self.prefix(i)


class Positions:
    """What converts a text's character positions to UTF-8 offsets and back, kept up to date by
    its edits: ``TextIndex`` (any text) or ``sparse_index.SparseIndex`` (few non-ASCII
    characters). Following a Yrs delta (``apply_delta``) is the same for both."""

    __slots__ = ("chars", "crowded", "utf8")

    chars: int  # the text's length in characters
    utf8: int  # and in UTF-8 bytes
    crowded: bool  # True once another kind of index would serve the text better (SharedText builds it)

    def offset(self, index: int) -> int:
        """The UTF-8 offset of character ``index`` (0 <= index <= chars)."""
        raise NotImplementedError

    def index(self, offset: int) -> int:
        """The character index at UTF-8 ``offset`` (0 <= offset <= utf8, on a character boundary)."""
        raise NotImplementedError

    def insert(self, index: int, s: str) -> int:
        """Insert ``s`` at character ``index``; returns the UTF-8 offset it went to."""
        raise NotImplementedError

    def delete(self, index: int, length: int) -> tuple[int, int]:
        """Remove ``length`` characters at ``index``; returns their UTF-8 (offset, size)."""
        raise NotImplementedError

    # --- remote changes -----------------------------------------------------------------------

    def apply_delta(self, delta: Iterable[Mapping[str, Any]]) -> None:
        """Apply a Yrs text delta (retain / delete counted in UTF-8 bytes; an inserted
        non-string is an embed, one ``EMBED``). Raises ValueError on anything it cannot follow
        (an offset inside a character, past the end): the caller then rebuilds the index from
        the text.

        A string embed reads here like text. An empty one (Yrs never reports empty text) is
        taken as the embed it is; one of a single UTF-8 byte counts as text does; any other
        leaves ``utf8`` above Yrs' length for good (later deltas change both alike), which the
        caller checks before using the index."""
        offset = 0  # UTF-8 offset in the text as changed so far
        for op in delta:
            if "insert" in op:
                s = op["insert"]
                if not isinstance(s, str) or not s:
                    s = EMBED
                self.insert(self.index(offset), s)
                offset += _utf8(s)
            elif "delete" in op:
                n = int(op["delete"])
                start = self.index(offset)
                end = self.index(offset + n)
                self.delete(start, end - start)
            elif "retain" in op:
                offset += int(op["retain"])
            if offset > self.utf8:
                raise ValueError(f"a text delta went past the end ({offset} > {self.utf8} bytes)")


class TextIndex(Positions):
    """A chunked copy of a text that converts character positions to UTF-8 offsets and back."""

    __slots__ = ("_bytes", "_chars", "_chunk_bytes", "_chunk_chars", "_chunks", "_max")

    def __init__(self, text: str = "", max_chunk: int | None = None) -> None:
        self._max = max(2, max_chunk or MAX_CHUNK)
        half = self._max // 2
        self._chunks = [text[i : i + half] for i in range(0, len(text), half)] or [""]
        self._chunk_chars = [len(c) for c in self._chunks]
        self._chunk_bytes = [_utf8(c) for c in self._chunks]
        self.chars = len(text)
        self.utf8 = sum(self._chunk_bytes)
        self.crowded = False
        self._rebuild()

    def _rebuild(self) -> None:
        """The trees again, from the per-chunk counts: O(chunks), no string is read."""
        self._chars = _Fenwick(self._chunk_chars)
        self._bytes = _Fenwick(self._chunk_bytes)

    def __str__(self) -> str:
        return "".join(self._chunks)

    def _locate(self, index: int) -> tuple[int, int, int]:
        """``(i, chars, utf8)``: the chunk holding character ``index`` (as ``_Fenwick.find``) and
        the characters and UTF-8 bytes before it, in one descent of both trees (they have the
        same shape) instead of a find in one and a prefix sum in the other. The descent is what
        grows with the document (log chunks): one walk instead of two kept what an edit costs
        in a 1 MB text closer to a 10 KB one (bench/README.md, "The writer's per-keystroke cost")."""
        chars, nbytes = self._chars._tree, self._bytes._tree
        n = len(chars) - 1
        pos = before = before_bytes = 0
        step = self._chars._top
        while step:
            nxt = pos + step
            if nxt <= n:
                count = chars[nxt]
                if count <= index:
                    pos = nxt
                    index -= count
                    before += count
                    before_bytes += nbytes[nxt]
            step >>= 1
        if pos >= n:  # at (or past) the end: the last chunk, at its end
            pos = n - 1
            before -= self._chunk_chars[pos]
            before_bytes -= self._chunk_bytes[pos]
        return pos, before, before_bytes

    def _head_bytes(self, i: int, k: int) -> int:
        """UTF-8 bytes of the first ``k`` characters of chunk ``i``, encoding whichever side of
        ``k`` is shorter (an ASCII chunk: none). Encoding the chunk is what an edit in a large
        text pays most for (its strings are out of the caches): half as much on average."""
        chunk_bytes = self._chunk_bytes[i]
        size = self._chunk_chars[i]
        if chunk_bytes == size:
            return k
        chunk = self._chunks[i]
        if 2 * k <= size:
            return _utf8(chunk[:k])
        return chunk_bytes - _utf8(chunk[k:])

    def _add(self, i: int, chars: int, utf8: int) -> None:
        """Chunk ``i`` gained ``chars`` characters of ``utf8`` bytes (negative: lost): both trees, one walk."""
        tree_chars, tree_bytes = self._chars._tree, self._bytes._tree
        n = len(tree_chars) - 1
        i += 1
        while i <= n:
            tree_chars[i] += chars
            tree_bytes[i] += utf8
            i += i & -i

    # --- conversions --------------------------------------------------------------------------

    def offset(self, index: int) -> int:
        """The UTF-8 offset of character ``index`` (0 <= index <= chars)."""
        if self.chars == self.utf8:
            return index  # all ASCII
        i, before, before_bytes = self._locate(index)
        return before_bytes + self._head_bytes(i, index - before)

    def index(self, offset: int) -> int:
        """The character index at UTF-8 ``offset`` (0 <= offset <= utf8, on a character boundary)."""
        if not 0 <= offset <= self.utf8:
            raise ValueError(f"UTF-8 offset {offset} is outside the text ({self.utf8} bytes)")
        if self.chars == self.utf8:
            return offset
        i, before = self._bytes.find(offset)
        chunk = self._chunks[i]
        inside = offset - before
        encoded = chunk.encode("utf-8")
        if inside < len(encoded) and (encoded[inside] & 0xC0) == 0x80:
            raise ValueError(f"UTF-8 offset {offset} is inside a character")
        return self._chars.prefix(i) + len(encoded[:inside].decode("utf-8"))

    # --- edits --------------------------------------------------------------------------------

    def insert(self, index: int, s: str) -> int:
        """Insert ``s`` at character ``index``; returns the UTF-8 offset it went to."""
        i, before, before_bytes = self._locate(index)
        k = index - before
        chunk = self._chunks[i]
        offset = before_bytes + (k if self.chars == self.utf8 else self._head_bytes(i, k))
        if not s:
            return offset
        new = chunk[:k] + s + chunk[k:]
        size = _utf8(s)
        self.chars += len(s)
        self.utf8 += size
        if len(new) <= self._max:
            self._chunks[i] = new
            self._chunk_chars[i] += len(s)
            self._chunk_bytes[i] += size
            self._add(i, len(s), size)
            return offset
        # Split into even pieces of about half the maximum, dropping chunks emptied by deletes
        # meanwhile; then the trees are rebuilt from the counts. At least max/2 characters are
        # inserted between two splits of one chunk, so this stays small amortised.
        pieces = max(2, len(new) // (self._max // 2))
        step = -(-len(new) // pieces)
        parts = [new[j : j + step] for j in range(0, len(new), step)]
        chunks, nchars, nbytes = self._chunks, self._chunk_chars, self._chunk_bytes
        chunks[i : i + 1] = parts
        nchars[i : i + 1] = [len(p) for p in parts]
        nbytes[i : i + 1] = [_utf8(p) for p in parts]
        if 0 in nchars:
            keep = [j for j, n in enumerate(nchars) if n] or [0]
            self._chunks = [chunks[j] for j in keep]
            self._chunk_chars = [nchars[j] for j in keep]
            self._chunk_bytes = [nbytes[j] for j in keep]
        self._rebuild()
        return offset

    def delete(self, index: int, length: int) -> tuple[int, int]:
        """Remove ``length`` characters at ``index``; returns their UTF-8 (offset, size)."""
        i, before, before_bytes = self._locate(index)
        k = index - before
        chunks = self._chunks
        offset = before_bytes + (k if self.chars == self.utf8 else self._head_bytes(i, k))
        removed = 0
        while length > 0:
            if i >= len(chunks):
                raise IndexError("delete past the end of the text")
            chunk = chunks[i]
            take = min(length, len(chunk) - k)
            if take > 0:  # (an emptied chunk stays, empty, until the next split drops it)
                gone = chunk[k : k + take]
                chunks[i] = chunk[:k] + chunk[k + take :]
                size = _utf8(gone)
                self._chunk_chars[i] -= take
                self._chunk_bytes[i] -= size
                self._add(i, -take, -size)
                self.chars -= take
                self.utf8 -= size
                removed += size
                length -= take
            i += 1
            k = 0
        return offset, removed



__all__ = ["EMBED", "MAX_CHUNK", "Positions", "TextIndex", "positions_text"]
