"""Which payloads each phase 1 message may carry (RFC 2409 §5), as a table.

A message is checked against its rule before any exchange logic sees it, so
the exchange code can index payloads without defending against surprises.
Vendor IDs and NAT-D are allowed wherever strongSwan sends them and ignored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

from groupvpn.wire.constants import PayloadType as P
from groupvpn.wire.payloads import Payload


@dataclass(frozen=True, slots=True)
class MessageRule:
    name: str
    required: tuple[int, ...]  # each exactly once
    optional_repeating: frozenset[int]  # zero or more
    encrypted: bool | None  # None: either (RFC 2409 draws AM3 clear, many encrypt it)


_IGNORABLE = frozenset({P.VENDOR_ID, P.NAT_D, P.NAT_D_DRAFT})

MAIN_MODE_RULES: tuple[MessageRule, ...] = (
    MessageRule("MM1", (P.SA,), _IGNORABLE, False),
    MessageRule("MM2", (P.SA,), _IGNORABLE, False),
    MessageRule("MM3", (P.KE, P.NONCE), _IGNORABLE | {P.CR}, False),
    MessageRule("MM4", (P.KE, P.NONCE), _IGNORABLE | {P.CR}, False),
    MessageRule("MM5", (P.ID, P.HASH), _IGNORABLE | {P.NOTIFY}, True),
    MessageRule("MM6", (P.ID, P.HASH), _IGNORABLE | {P.NOTIFY}, True),
)

AGGRESSIVE_MODE_RULES: tuple[MessageRule, ...] = (
    MessageRule("AM1", (P.SA, P.KE, P.NONCE, P.ID), _IGNORABLE, False),
    MessageRule("AM2", (P.SA, P.KE, P.NONCE, P.ID, P.HASH), _IGNORABLE, False),
    MessageRule("AM3", (P.HASH,), _IGNORABLE | {P.NOTIFY}, None),
)


def violation(rule: MessageRule, payloads: tuple[Payload, ...], encrypted: bool) -> str | None:
    """Why ``payloads`` break ``rule``, or None when they follow it."""
    if rule.encrypted is not None and rule.encrypted != encrypted:
        return f"{rule.name} must {'' if rule.encrypted else 'not '}be encrypted"
    counts = Counter(payload.payload_type for payload in payloads)
    for payload_type in rule.required:
        if counts[payload_type] != 1:
            return f"{rule.name} needs exactly one {P(payload_type).name} payload"
    for payload_type in counts:
        if payload_type not in rule.required and payload_type not in rule.optional_repeating:
            return f"{rule.name} may not carry a {_name(payload_type)} payload"
    return None


def _name(payload_type: int) -> str:
    try:
        return P(payload_type).name
    except ValueError:
        return f"type-{payload_type}"


T = TypeVar("T", bound=Payload)


def first_of(payloads: tuple[Payload, ...], cls: type[T]) -> T:
    """The first payload of ``cls``; only call after :func:`violation` passed."""
    for payload in payloads:
        if isinstance(payload, cls):
            return payload
    raise LookupError(cls.__name__)
