"""Value types of configuration statements: each turns one token into a typed value.

A value type raises :class:`ValueProblem` with a Junos-worded message when a token is not
acceptable.  Types marked ``secret`` never put the token into a message, and the parser
never echoes their token in a statement either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

from groupvpn.config.model import Secret

_WHITESPACE = re.compile(r"\s")
# ASCII only: str.isdigit() and int() accept other scripts' digits, Junos does not.
_DECIMAL = re.compile(r"[0-9]+")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
# Junos stores ascii-text keys obfuscated as "$9$..."; taking that text as the key would
# silently never match the peer, so it is refused with an explanation instead.
_JUNOS_OBFUSCATED = re.compile(r"\$9\$")


class ValueProblem(ValueError):
    """A token is not a valid value; ``message`` is the Junos-style explanation."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # A word that is not one of the allowed keywords is a Junos "syntax error", shown
        # with a "syntax error: WORD" headline; other bad values are not.
        self.syntax = syntax


class ValueType(Protocol):
    """Parses one token.  ``secret`` types are never echoed in diagnostics."""

    @property
    def secret(self) -> bool: ...

    def parse(self, token: str) -> object: ...


@dataclass(frozen=True, slots=True)
class Keyword:
    """One of a fixed set of keywords, mapped to the model's value for it."""

    choices: Mapping[str, object]
    secret: bool = False

    @classmethod
    def of(cls, *words: str) -> Keyword:
        """Keywords that stand for themselves in the model."""
        return cls({w: w for w in words})

    def parse(self, token: str) -> object:
        try:
            return self.choices[token]
        except KeyError:
            expected = " ".join(self.choices)
            raise ValueProblem(f"syntax error, expecting one of: {expected}", syntax=True) from None


@dataclass(frozen=True, slots=True)
class Integer:
    """A decimal integer within ``low..high``."""

    low: int
    high: int
    secret: bool = False

    def parse(self, token: str) -> object:
        if not _DECIMAL.fullmatch(token):
            raise ValueProblem(f"Invalid numeric value: '{token}'")
        value = int(token)
        if not self.low <= value <= self.high:
            raise ValueProblem(f"Value {value} is not within range ({self.low}..{self.high})")
        return value


@dataclass(frozen=True, slots=True)
class Ipv4:
    """A dotted-quad IPv4 address (no prefix length, no hostname)."""

    secret: bool = False

    def parse(self, token: str) -> object:
        # Check the dotted-quad shape first: one message for "1.2.3", "host.example" and
        # "1.2.3.300", and no reliance on which odd forms ipaddress might accept.
        if _DOTTED_QUAD.fullmatch(token):
            try:
                return IPv4Address(token)
            except ValueError:
                pass
        raise ValueProblem(f"Invalid IPv4 address: '{token}'")


@dataclass(frozen=True, slots=True)
class Text:
    """Free text of ``min_len..max_len`` characters (printable, no control characters)."""

    max_len: int
    min_len: int = 1
    secret: bool = False

    def parse(self, token: str) -> object:
        if len(token) < self.min_len:
            raise ValueProblem("Must be a non-empty string")
        if len(token) > self.max_len:
            raise ValueProblem(f"Must be a string of {self.max_len} characters or less")
        if not token.isprintable():
            raise ValueProblem("Must not contain control characters")
        return token


@dataclass(frozen=True, slots=True)
class Name:
    """An object name (proposal, policy, gateway): 1..max_len characters, optional pattern."""

    max_len: int = 32
    pattern: re.Pattern[str] | None = None
    pattern_message: str = ""
    secret: bool = False

    def parse(self, token: str) -> object:
        if not token or len(token) > self.max_len:
            raise ValueProblem(f"Must be a string of {self.max_len} characters or less")
        if self.pattern is not None and not self.pattern.fullmatch(token):
            raise ValueProblem(self.pattern_message)
        if not token.isprintable() or _WHITESPACE.search(token):
            raise ValueProblem("Must not contain spaces or control characters")
        return token


@dataclass(frozen=True, slots=True)
class Hostname:
    """A fully qualified domain name (ASCII letters, digits, dashes, dots)."""

    secret: bool = False

    def parse(self, token: str) -> object:
        if len(token) > 253 or not _HOSTNAME.fullmatch(token):
            raise ValueProblem(f"Invalid hostname: '{token}'")
        return token


@dataclass(frozen=True, slots=True)
class Email:
    """``user@fqdn`` as used by ``user-at-hostname`` identities."""

    secret: bool = False

    def parse(self, token: str) -> object:
        local, at, domain = token.rpartition("@")
        if (
            not at
            or not _EMAIL_LOCAL.fullmatch(local)
            or len(token) > 255
            or not _HOSTNAME.fullmatch(domain)
        ):
            raise ValueProblem(f"Invalid e-mail address: '{token}'")
        return token


@dataclass(frozen=True, slots=True)
class AsciiKey:
    """``pre-shared-key ascii-text``: 1..255 characters, kept as UTF-8 bytes in a Secret."""

    secret: bool = field(default=True, init=False)

    def parse(self, token: str) -> object:
        if not 1 <= len(token) <= 255:
            raise ValueProblem("Pre-shared key must be 1 to 255 characters long")
        if _JUNOS_OBFUSCATED.match(token):
            raise ValueProblem(
                "Junos $9$-encrypted keys are not supported; give the key in plain text"
            )
        return Secret(token.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class HexKey:
    """``pre-shared-key hexadecimal``: an even number of hex digits (``0x`` prefix allowed)."""

    secret: bool = field(default=True, init=False)

    def parse(self, token: str) -> object:
        match = _HEX.fullmatch(token)
        if match is None or len(match.group(1)) % 2 or len(match.group(1)) > 510:
            raise ValueProblem(
                "Pre-shared key must be an even number of hexadecimal digits (at most 510)"
            )
        return Secret(bytes.fromhex(match.group(1)))


_PREFIX = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3})(?:/([0-9]{1,2}))?")
_PORT_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class Ipv4Prefix:
    """``A.B.C.D/LEN`` (a bare address is a /32); host bits are masked off, as Junos does
    when it matches an address-book entry or a group policy."""

    secret: bool = False

    def parse(self, token: str) -> object:
        match = _PREFIX.fullmatch(token)
        if match is not None:
            length = match.group(2)
            try:
                address = IPv4Address(match.group(1))
                if length is None or int(length) <= 32:
                    return IPv4Network(f"{address}/{length or 32}", strict=False)
            except ValueError:
                pass
        raise ValueProblem(f"Invalid IPv4 prefix: '{token}'")


@dataclass(frozen=True, slots=True)
class Ipv4InterfaceAddress:
    """An interface address with its prefix length: ``10.1.0.1/24``."""

    secret: bool = False

    def parse(self, token: str) -> object:
        match = _PREFIX.fullmatch(token)
        if match is not None and match.group(2) is not None:
            try:
                IPv4Address(match.group(1))
                if int(match.group(2)) <= 32:
                    return IPv4Interface(token)
            except ValueError:
                pass
        raise ValueProblem(f"Invalid IPv4 interface address: '{token}' (expected A.B.C.D/LEN)")


@dataclass(frozen=True, slots=True)
class PortRange:
    """``N`` or ``N-M`` within 0..65535, as ``(low, high)``."""

    secret: bool = False

    def parse(self, token: str) -> object:
        match = _PORT_RANGE.fullmatch(token)
        if match is None:
            raise ValueProblem(f"Invalid port or port range: '{token}'")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        for value in (low, high):
            if value > 65535:
                raise ValueProblem(f"Value {value} is not within range (0..65535)")
        if low > high:
            raise ValueProblem(f"Invalid port range: '{token}' (low port above high port)")
        return (low, high)


# IP protocol keywords accepted by ``applications application NAME protocol``.
IP_PROTOCOLS: Mapping[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ospf": 89,
    "pim": 103,
    "sctp": 132,
}


@dataclass(frozen=True, slots=True)
class IpProtocol:
    """An IP protocol keyword (``tcp``) or number 0..255."""

    secret: bool = False

    def parse(self, token: str) -> object:
        if token in IP_PROTOCOLS:
            return IP_PROTOCOLS[token]
        if _DECIMAL.fullmatch(token):
            value = int(token)
            if value > 255:
                raise ValueProblem(f"Value {value} is not within range (0..255)")
            return value
        expected = " ".join(IP_PROTOCOLS)
        raise ValueProblem(
            f"syntax error, expecting a number 0..255 or one of: {expected}", syntax=True
        )
