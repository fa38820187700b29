"""ISAKMP data attributes (RFC 2408 §3.3), shared by IKE transforms and GDOI payloads.

An attribute is either *basic* (TV: the top bit of the type is set and the
second 16-bit word is the value) or *variable* (TLV: a 16-bit length and that
many octets).  :class:`DataAttribute` keeps the form it was received in, so
decode followed by encode gives back the same octets.
"""

from __future__ import annotations

from dataclasses import dataclass

from groupvpn.wire.buffer import Buffer, DecodeError

_BASIC_FLAG = 0x8000


@dataclass(frozen=True, slots=True)
class DataAttribute:
    """One attribute.  ``value`` is an int for the basic form, bytes for the variable form."""

    type: int
    value: int | bytes

    @classmethod
    def basic(cls, attr_type: int, value: int) -> DataAttribute:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"basic attribute {attr_type} value {value} does not fit 16 bits")
        return cls(attr_type, value)

    @classmethod
    def variable(cls, attr_type: int, value: bytes) -> DataAttribute:
        if len(value) > 0xFFFF:
            raise ValueError(f"variable attribute {attr_type} is longer than 65535 octets")
        return cls(attr_type, value)

    @classmethod
    def basic_or_variable(cls, attr_type: int, value: int) -> DataAttribute:
        """B/V attributes (life durations): basic when the value fits 16 bits."""
        if 0 <= value <= 0xFFFF:
            return cls(attr_type, value)
        return cls(attr_type, value.to_bytes(max(4, (value.bit_length() + 7) // 8), "big"))

    @property
    def is_basic(self) -> bool:
        return isinstance(self.value, int)

    def as_int(self) -> int:
        """The value as an integer, whichever form carried it."""
        if isinstance(self.value, int):
            return self.value
        return int.from_bytes(self.value, "big")

    def as_bytes(self) -> bytes:
        if isinstance(self.value, bytes):
            return self.value
        return self.value.to_bytes(2, "big")


def pull_attributes(buf: Buffer, what: str) -> tuple[DataAttribute, ...]:
    """Read attributes until the end of ``buf``'s window."""
    attributes = []
    while not buf.eof():
        start = buf.tell()
        word = buf.pull_uint16(f"{what} attribute type")
        attr_type = word & 0x7FFF
        if word & _BASIC_FLAG:
            attributes.append(DataAttribute(attr_type, buf.pull_uint16(f"{what} attribute value")))
        else:
            length = buf.pull_uint16(f"{what} attribute length")
            if length > buf.remaining():
                raise DecodeError(
                    f"{what} attribute {attr_type} length {length} exceeds the "
                    f"{buf.remaining()} octets left",
                    start,
                )
            attributes.append(DataAttribute(attr_type, buf.pull_bytes(length)))
    return tuple(attributes)


def push_attributes(buf: Buffer, attributes: tuple[DataAttribute, ...]) -> None:
    for attribute in attributes:
        if not 0 <= attribute.type <= 0x7FFF:
            raise ValueError(f"attribute type {attribute.type} does not fit 15 bits")
        if isinstance(attribute.value, int):
            buf.push_uint16(_BASIC_FLAG | attribute.type)
            buf.push_uint16(attribute.value)
        else:
            buf.push_uint16(attribute.type)
            buf.push_uint16(len(attribute.value))
            buf.push_bytes(attribute.value)


def find_attribute(attributes: tuple[DataAttribute, ...], attr_type: int) -> DataAttribute | None:
    for attribute in attributes:
        if attribute.type == attr_type:
            return attribute
    return None
