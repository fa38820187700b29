"""Schema of the Group VPN groups: ``[edit security group-vpn server ipsec]``,
``[edit security group-vpn server group NAME]`` and
``[edit security group-vpn member ipsec vpn NAME]``."""

from __future__ import annotations

from groupvpn.config import model_groups as mg
from groupvpn.config.statements import (
    DESCRIPTION,
    LOGICAL_INTERFACE_NAME,
    OBJECT_NAME,
    PROPOSAL_NAME,
    Container,
    Flag,
    Leaf,
    LeafList,
    Named,
    keywords_of,
)
from groupvpn.config.values import Integer, Ipv4, Ipv4Prefix, Text

_LIFETIME = Integer(180, 86400)

IPSEC_PROPOSAL = Container(
    {
        "encryption-algorithm": Leaf(keywords_of(mg.IpsecEncryptionAlgorithm)),
        # Mandatory with a CBC cipher, not allowed with AES-GCM: a commit check
        # (checks_groups.proposal_authentication).
        "authentication-algorithm": Leaf(keywords_of(mg.IpsecAuthenticationAlgorithm)),
        "lifetime-seconds": Leaf(_LIFETIME, default=mg.DEFAULT_IPSEC_LIFETIME_SECONDS),
        "description": DESCRIPTION,
    },
    mandatory=("encryption-algorithm",),
)

SERVER_IPSEC = Container({"proposal": Named(PROPOSAL_NAME, IPSEC_PROPOSAL)})

MATCH_POLICY = Container(
    {
        "source": Leaf(Ipv4Prefix()),
        "destination": Leaf(Ipv4Prefix()),
        "source-port": Leaf(Integer(0, 65535), default=0),
        "destination-port": Leaf(Integer(0, 65535), default=0),
        "protocol": Leaf(Integer(0, 254), default=0),
    },
    mandatory=("source", "destination"),
)

IPSEC_SA = Container(
    {
        "proposal": Leaf(PROPOSAL_NAME),
        "match-policy": Named(OBJECT_NAME, MATCH_POLICY),
    },
    mandatory=("proposal",),
)

SERVER_MEMBER_COMMUNICATION = Container(
    {
        "communication-type": Leaf(keywords_of(mg.CommunicationType), default="unicast"),
        "encryption-algorithm": Leaf(keywords_of(mg.KekEncryptionAlgorithm)),
        "sig-hash-algorithm": Leaf(keywords_of(mg.SigHashAlgorithm)),
        "lifetime-seconds": Leaf(_LIFETIME, default=mg.DEFAULT_KEK_LIFETIME_SECONDS),
        "heartbeat": Leaf(Integer(60, 3600), default=mg.DEFAULT_HEARTBEAT),
        "number-of-retransmission": Leaf(
            Integer(0, 60), default=mg.DEFAULT_NUMBER_OF_RETRANSMISSION
        ),
        "retransmission-period": Leaf(Integer(2, 60), default=mg.DEFAULT_RETRANSMISSION_PERIOD),
        "multicast-group": Leaf(Ipv4()),
        "multicast-outgoing-interface": Leaf(LOGICAL_INTERFACE_NAME),
        "certificate": Leaf(Text(255)),
    },
    mandatory=("encryption-algorithm", "sig-hash-algorithm"),
)

SERVER_GROUP = Container(
    {
        "group-id": Leaf(Integer(1, 65535)),
        "description": DESCRIPTION,
        "server-address": Leaf(Ipv4()),
        "ike-gateway": LeafList(OBJECT_NAME),
        "activation-time-delay": Leaf(Integer(10, 900), default=mg.DEFAULT_ACTIVATION_TIME_DELAY),
        "anti-replay-time-window": Leaf(
            Integer(60, 360), default=mg.DEFAULT_ANTI_REPLAY_TIME_WINDOW
        ),
        "no-anti-replay": Flag(),
        "ipsec-sa": Named(OBJECT_NAME, IPSEC_SA),
        "server-member-communication": SERVER_MEMBER_COMMUNICATION,
    },
    mandatory=("group-id",),
    exclusive=(frozenset({"anti-replay-time-window", "no-anti-replay"}),),
)

MEMBER_VPN = Container(
    {
        "ike-gateway": Leaf(OBJECT_NAME),
        "group": Leaf(Integer(1, 65535)),
        "group-vpn-external-interface": Leaf(LOGICAL_INTERFACE_NAME),
        "heartbeat-threshold": Leaf(Integer(0, 10), default=mg.DEFAULT_HEARTBEAT_THRESHOLD),
    },
    mandatory=("ike-gateway", "group"),
)

MEMBER_IPSEC = Container({"vpn": Named(OBJECT_NAME, MEMBER_VPN)})
