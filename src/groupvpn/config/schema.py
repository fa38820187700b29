"""The Junos statement tree we accept, as data.

The parser walks this tree keyword by keyword; defaults, ranges, mandatory statements and
list limits live here, not in code.  To support a new part of the configuration (server
``group``, ``ipsec proposal``, member ``ipsec vpn``, ``security policies`` ...) add its
statements here and a builder for its model objects in :mod:`groupvpn.config.loader`.

The statement kinds are in :mod:`groupvpn.config.statements`; the server group and
member VPN statements are in :mod:`groupvpn.config.schema_groups`, zones, address books,
policies, applications and interfaces in :mod:`groupvpn.config.schema_security`.
"""

from __future__ import annotations

from typing import get_args

from groupvpn.config import model
from groupvpn.config.schema_groups import MEMBER_IPSEC, SERVER_GROUP, SERVER_IPSEC
from groupvpn.config.schema_security import APPLICATIONS, INTERFACES, SECURITY
from groupvpn.config.statements import (
    DESCRIPTION,
    OBJECT_NAME,
    PROPOSAL_NAME,
    Choice,
    Container,
    Flag,
    Leaf,
    LeafList,
    Named,
    Statement,
    keywords_of,
)
from groupvpn.config.values import (
    AsciiKey,
    Email,
    HexKey,
    Hostname,
    Integer,
    Ipv4,
    Keyword,
    Text,
)

__all__ = ["ROOT", "Choice", "Container", "Flag", "Leaf", "LeafList", "Named", "Statement"]


# --- [edit security group-vpn (server | member) ike] -----------------------------------

_PROPOSAL_NAME = PROPOSAL_NAME
_OBJECT_NAME = OBJECT_NAME
_DESCRIPTION = DESCRIPTION
_keywords_of = keywords_of

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
        "server": Container(
            {"ike": IKE, "ipsec": SERVER_IPSEC, "group": Named(OBJECT_NAME, SERVER_GROUP)}
        ),
        "member": Container({"ike": IKE, "ipsec": MEMBER_IPSEC}),
    }
)

ROOT = Container(
    {
        "security": Container({"group-vpn": GROUP_VPN, **SECURITY}),
        "applications": APPLICATIONS,
        "interfaces": INTERFACES,
    }
)
