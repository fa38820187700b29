"""One buffer type for every codec: strict pulls, plain pushes.

Every decoder in groupvpn reads through :class:`Buffer`.  A pull past the end,
a length that does not fit, or bytes left over where none may be raise
:class:`DecodeError`, and nothing else: callers that take bytes from the
network catch exactly that one exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class DecodeError(ValueError):
    """Bytes that do not decode.

    ``offset`` is where in the input it went wrong.  ``notify`` optionally names
    the ISAKMP Notify type (RFC 2408 §3.14.1) a responder should answer with;
    without it the failure maps to PAYLOAD-MALFORMED.
    """

    def __init__(self, message: str, offset: int | None = None, notify: int | None = None) -> None:
        self.reason = message
        self.offset = offset
        self.notify = notify
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")


class Buffer:
    """A read cursor over immutable bytes, or a growing write buffer.

    A read buffer covers ``data[start:end]``; offsets in errors are absolute
    positions in ``data`` so that nested payloads report where they really are.
    """

    __slots__ = ("_data", "_end", "_out", "_pos")

    def __init__(self, data: bytes = b"", start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end
        self._out = bytearray()
        if not 0 <= start <= self._end <= len(data):
            raise DecodeError(f"window {start}..{self._end} outside {len(data)} octets", start)

    # -- reading ---------------------------------------------------------

    def tell(self) -> int:
        return self._pos

    @property
    def end(self) -> int:
        return self._end

    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _take(self, size: int, what: str) -> int:
        if size < 0 or self._pos + size > self._end:
            raise DecodeError(
                f"{what}: need {size} octets, only {self._end - self._pos} left", self._pos
            )
        pos = self._pos
        self._pos += size
        return pos

    def pull_uint8(self, what: str = "uint8") -> int:
        return self._data[self._take(1, what)]

    def pull_uint16(self, what: str = "uint16") -> int:
        value: int = _U16.unpack_from(self._data, self._take(2, what))[0]
        return value

    def pull_uint32(self, what: str = "uint32") -> int:
        value: int = _U32.unpack_from(self._data, self._take(4, what))[0]
        return value

    def pull_bytes(self, size: int, what: str = "bytes") -> bytes:
        pos = self._take(size, what)
        return self._data[pos : pos + size]

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining(), "rest")

    def expect_end(self, what: str) -> None:
        """Leftover octets inside a length-delimited structure are an error."""
        if self._pos != self._end:
            raise DecodeError(
                f"{what}: {self._end - self._pos} unexpected trailing octets", self._pos
            )

    @contextmanager
    def pull_block(self, size: int, what: str) -> Iterator[Buffer]:
        """Yield a sub-buffer of exactly ``size`` octets that must be consumed whole."""
        start = self._take(size, what)
        sub = Buffer(self._data, start, start + size)
        yield sub
        sub.expect_end(what)

    # -- writing ---------------------------------------------------------

    def push_uint8(self, value: int) -> None:
        self._out.append(value)

    def push_uint16(self, value: int) -> None:
        self._out += _U16.pack(value)

    def push_uint32(self, value: int) -> None:
        self._out += _U32.pack(value)

    def push_bytes(self, value: bytes) -> None:
        self._out += value

    def written(self) -> int:
        return len(self._out)

    def patch_uint16(self, offset: int, value: int) -> None:
        _U16.pack_into(self._out, offset, value)

    def patch_uint32(self, offset: int, value: int) -> None:
        _U32.pack_into(self._out, offset, value)

    def getvalue(self) -> bytes:
        return bytes(self._out)
