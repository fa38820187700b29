"""The Junos statement tree we accept, as data.

The parser walks this tree keyword by keyword; defaults, ranges, mandatory statements and
list limits live here, not in code.  To support a new part of the configuration (server
``group``, ``ipsec proposal``, member ``ipsec vpn``, ``security policies`` ...) add its
statements here and a builder for its model objects in :mod:`groupvpn.config.loader`.

Statement kinds:

- :class:`Container` -- ``ike { ... }``: a fixed keyword that opens a level.
- :class:`Named` -- ``proposal NAME { ... }``: a keyword plus a name, one level per name.
- :class:`Leaf` -- ``mode main``: one value; a later line replaces an earlier one.
- :class:`LeafList` -- ``proposals [ a b ]``: ordered values; later lines append.
- :class:`Flag` -- ``co-location``: present or not.
- :class:`Choice` -- ``pre-shared-key ascii-text KEY``: a keyword picks the value's type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from groupvpn.config import model
from groupvpn.config.values import (
    AsciiKey,
    Email,
    HexKey,
    Hostname,
    Integer,
    Ipv4,
    Keyword,
    Name,
    Text,
    ValueType,
)


@dataclass(frozen=True, slots=True)
class Leaf:
    value: ValueType
    default: object = None


@dataclass(frozen=True, slots=True)
class LeafList:
    value: ValueType
    max_items: int | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    pass


@dataclass(frozen=True, slots=True)
class Choice:
    """``keyword option VALUE``; the stored value is ``(option, parsed VALUE)``."""

    options: Mapping[str, ValueType]

    @property
    def secret(self) -> bool:
        return any(v.secret for v in self.options.values())


@dataclass(frozen=True, slots=True)
class Container:
    children: Mapping[str, Statement]
    mandatory: tuple[str, ...] = ()
    # Groups of statements of which only one may be set; setting one removes the others,
    # as a Junos ``choice`` does.
    exclusive: tuple[frozenset[str], ...] = ()

    def exclusive_with(self, keyword: str) -> frozenset[str]:
        for group in self.exclusive:
            if keyword in group:
                return group - {keyword}
        return frozenset()


@dataclass(frozen=True, slots=True)
class Named:
    name: Name
    body: Container = field(default_factory=lambda: Container({}))


Statement = Container | Named | Leaf | LeafList | Flag | Choice


def _keywords_of(literal: object) -> Keyword:
    """The keywords of a model ``Literal`` type, so the schema follows the model."""
    return Keyword.of(*(str(w) for w in get_args(literal)))


# --- [edit security group-vpn (server | member) ike] -----------------------------------

_PROPOSAL_NAME = Name(
    32,
    re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*"),
    "Must be a string beginning with a number or letter and consisting of letters, "
    "numbers, dashes and underscores.",
)
_OBJECT_NAME = Name(32)
_DESCRIPTION = Leaf(Text(80))

IKE_PROPOSAL = Container(
    {
        "authentication-method": Leaf(_keywords_of(model.AuthenticationMethod)),
        "authentication-algorithm": Leaf(_keywords_of(model.AuthenticationAlgorithm)),
        "dh-group": Leaf(Keyword({f"group{g}": g for g in get_args(model.DhGroup)})),
        "encryption-algorithm": Leaf(_keywords_of(model.EncryptionAlgorithm)),
        "lifetime-seconds": Leaf(Integer(180, 86400), default=model.DEFAULT_IKE_LIFETIME_SECONDS),
        "description": _DESCRIPTION,
    },
    mandatory=(
        "authentication-method",
        "authentication-algorithm",
        "dh-group",
        "encryption-algorithm",
    ),
)

IKE_POLICY = Container(
    {
        "mode": Leaf(_keywords_of(model.IkeMode), default="main"),
        # A policy offers at most four proposals, all with the same DH group.
        "proposals": LeafList(_PROPOSAL_NAME, max_items=4),
        "proposal-set": Leaf(_keywords_of(model.ProposalSet)),
        "pre-shared-key": Choice({"ascii-text": AsciiKey(), "hexadecimal": HexKey()}),
        "description": _DESCRIPTION,
    },
    exclusive=(frozenset({"proposals", "proposal-set"}),),
)

_IDENTITY = Choice(
    {
        "inet": Ipv4(),
        "hostname": Hostname(),
        "user-at-hostname": Email(),
        "key-id": Text(255),
    }
)

IKE_GATEWAY = Container(
    {
        "ike-policy": Leaf(_OBJECT_NAME),
        "address": LeafList(Ipv4()),
        "local-address": Leaf(Ipv4()),
        "local-identity": _IDENTITY,
        "remote-identity": _IDENTITY,
    },
    mandatory=("ike-policy", "address"),
)

IKE = Container(
    {
        "proposal": Named(_PROPOSAL_NAME, IKE_PROPOSAL),
        "policy": Named(_OBJECT_NAME, IKE_POLICY),
        "gateway": Named(_OBJECT_NAME, IKE_GATEWAY),
    }
)

GROUP_VPN = Container(
    {
        "co-location": Flag(),
        "server": Container({"ike": IKE}),
        "member": Container({"ike": IKE}),
    }
)

ROOT = Container({"security": Container({"group-vpn": GROUP_VPN})})
