"""How a delivery's body is kept: byte for byte as GitHub signed it, compressed on SQLite.

SQLite stores a 12 KB body uncompressed across four pages (one row, three
overflow pages), and every write of the row (the insert before the 202, the
processed mark after) puts all four into the WAL and, at the checkpoint, into
the database again. Compressed with lz4 (≈ 2.6 KB, ≈ 6 µs) the row fits one
page. PostgreSQL compresses the text itself on its way into TOAST (lz4 since
migration 0003), so it keeps the text.

What `pack` writes, told apart by the first byte, so a reader never needs to
know which version wrote a row:

- a str (rows written before this format, and PostgreSQL's text),
- bytes starting with ``\\x01``: the lz4 block format with its size stored,
- any other bytes: the JSON itself (a body too small to be worth compressing;
  JSON never starts with ``\\x01``).
"""

from __future__ import annotations

from lz4.block import LZ4BlockError, compress, decompress

LZ4 = 0x01
_LZ4_TAG = bytes([LZ4])
# Below this a body is stored as it is: the saving would not pay for the call.
MIN_COMPRESS = 512


class CorruptPayload(ValueError):
    """A stored payload that cannot be decoded (a damaged row)."""


def pack(body: bytes) -> bytes:
    """The stored form of a body (SQLite)."""
    if len(body) < MIN_COMPRESS:
        return body
    # Acceleration 2: a third faster than the default for ≈ 5 % more bytes
    # (12 KB → 2.7 KB, still one page).
    packed: bytes = compress(body, mode="fast", acceleration=2, store_size=True)
    return _LZ4_TAG + packed


def unpack(stored: str | bytes | memoryview) -> bytes:
    """The body from any stored form."""
    if isinstance(stored, str):
        return stored.encode()
    if stored[:1] == _LZ4_TAG:
        try:
            body: bytes = decompress(memoryview(stored)[1:])
        except LZ4BlockError as exc:
            raise CorruptPayload(f"stored payload does not decompress: {exc}") from exc
        return body
    return bytes(stored)
