"""Key encryption keys: the rekey SA of a group with `server-member-communication`.

A group's KEK is what the key server will encrypt (and, with its signing key,
sign) GROUPKEY-PUSH rekeys with.  Members get it at registration: the SA KEK
payload says what it is (gdoi-wire.md §4.2) and a KD KEK key packet carries
the key material (§4.5).  Junos names the algorithms in
`[edit security group-vpn server group G server-member-communication]`; the
tables below are the only place that maps them onto the wire numbers, and the
member decodes with the same tables.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from groupvpn.gdoi.push import HEARTBEAT_INTERVAL_ATTRIBUTE
from groupvpn.gdoi.push_ack import ack_requested_attribute
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.gdoi_kd import KeyPacket
from groupvpn.wire.gdoi_numbers import (
    KdType,
    KekAlgorithm,
    KekAttribute,
    KekKeyAttribute,
    SigAlgorithm,
    SigHashAlgorithm,
)
from groupvpn.wire.gdoi_sa import KEK_SPI_LENGTH, GdoiId, SaKekPayload

#: Rekeys travel as UDP datagrams (the SA KEK Protocol field, gdoi-wire.md §4.2).
REKEY_PROTOCOL_UDP = 17
COOKIE_LENGTH = KEK_SPI_LENGTH // 2


@dataclass(frozen=True, slots=True)
class KekCipher:
    name: str  # Junos keyword
    algorithm: int  # KEK_ALGORITHM value
    key_length: int  # octets
    block_size: int  # octets; also the length of the IV in KEK_ALGORITHM_KEY
    #: KEK_KEY_LENGTH in bits, sent for AES only: DES and 3DES have one key size,
    #: and the Cisco reference trace sends none for its 3DES KEK.
    key_length_attribute: int | None


@dataclass(frozen=True, slots=True)
class SigHash:
    name: str  # Junos keyword
    algorithm: int  # SIG_HASH_ALGORITHM value


KEK_CIPHERS: dict[str, KekCipher] = {
    c.name: c
    for c in (
        KekCipher("des-cbc", KekAlgorithm.DES, 8, 8, None),
        KekCipher("3des-cbc", KekAlgorithm.TRIPLE_DES, 24, 8, None),
        KekCipher("aes-128-cbc", KekAlgorithm.AES, 16, 16, 128),
        KekCipher("aes-192-cbc", KekAlgorithm.AES, 24, 16, 192),
        KekCipher("aes-256-cbc", KekAlgorithm.AES, 32, 16, 256),
    )
}

SIG_HASHES: dict[str, SigHash] = {
    h.name: h
    for h in (
        SigHash("md5", SigHashAlgorithm.MD5),
        SigHash("sha1", SigHashAlgorithm.SHA1),
        SigHash("sha-256", SigHashAlgorithm.SHA256),
        SigHash("sha-384", SigHashAlgorithm.SHA384),
        SigHash("sha-512", SigHashAlgorithm.SHA512),
    )
}


@dataclass(frozen=True, slots=True)
class KekPolicy:
    """`server-member-communication`, reduced to what the key server core needs."""

    cipher: KekCipher
    sig_hash: SigHash
    lifetime_seconds: int = 3600
    #: Where multicast rekeys go; None for unicast rekeys (each member's own address).
    multicast_group: IPv4Address | None = None
    #: `heartbeat` seconds, announced in the SA KEK (HEARTBEAT_INTERVAL); None: no heartbeats.
    heartbeat: int | None = None
    #: Members ACK every push (KEK_ACK_REQUESTED): what unicast rekeys need
    #: (``runtime.binding`` sets it for them).  The defaults, neither this nor a
    #: heartbeat, give the plain RFC 3547 SA KEK the Cisco reference sends.
    acks_requested: bool = False

    def __post_init__(self) -> None:
        if self.acks_requested and self.multicast_group is not None:
            raise ValueError("multicast rekeys are not acknowledged")

    @property
    def communication_type(self) -> str:
        return "unicast" if self.multicast_group is None else "multicast"


@dataclass(frozen=True, slots=True)
class Kek:
    """One group KEK: a 16-octet SPI (the PUSH header's two cookies), a key and its IV."""

    policy: KekPolicy
    spi: bytes
    key: bytes = field(repr=False)
    #: RFC 3547-era peers use this as the static CBC IV of every PUSH (gdoi-wire.md §0.2).
    iv: bytes = field(repr=False)
    created_at: float
    expires_at: float

    @property
    def cookies(self) -> tuple[bytes, bytes]:
        return self.spi[:COOKIE_LENGTH], self.spi[COOKIE_LENGTH:]

    def remaining(self, now: float) -> int:
        """Seconds left, as KEK_KEY_LIFETIME carries it (the remaining, not the total, life)."""
        return max(0, int(self.expires_at - now))

    def attributes(self, now: float, signature_bits: int) -> tuple[DataAttribute, ...]:
        """The SA KEK attributes, in type order as the Cisco reference sends them.

        After RFC 3547's: KEK_ACK_REQUESTED for unicast rekeys (members ACK every
        push, docs/rekey-wire.md §5) and our HEARTBEAT_INTERVAL (§3), both parsed
        by the member side with the same constants from ``groupvpn.gdoi``.
        """
        cipher = self.policy.cipher
        attributes = [DataAttribute.basic(KekAttribute.KEK_ALGORITHM, cipher.algorithm)]
        if cipher.key_length_attribute is not None:
            attributes.append(
                DataAttribute.basic(KekAttribute.KEK_KEY_LENGTH, cipher.key_length_attribute)
            )
        attributes += [
            # Always the 4-octet variable form (gdoi-wire.md §4.2: type V, seconds).
            DataAttribute.variable(
                KekAttribute.KEK_KEY_LIFETIME, self.remaining(now).to_bytes(4, "big")
            ),
            DataAttribute.basic(KekAttribute.SIG_HASH_ALGORITHM, self.policy.sig_hash.algorithm),
            DataAttribute.basic(KekAttribute.SIG_ALGORITHM, SigAlgorithm.RSA),
            # Modulus bits, as the Cisco reference code checks it against the key.
            DataAttribute.basic(KekAttribute.SIG_KEY_LENGTH, signature_bits),
        ]
        if self.policy.acks_requested:
            attributes.append(ack_requested_attribute())
        if self.policy.heartbeat is not None:
            attributes.append(
                DataAttribute.basic(HEARTBEAT_INTERVAL_ATTRIBUTE, self.policy.heartbeat)
            )
        return tuple(attributes)

    def sa_kek(
        self, now: float, source: GdoiId, destination: GdoiId, signature_bits: int
    ) -> SaKekPayload:
        """The SA KEK announcing this KEK, PUSHes coming from ``source`` to ``destination``."""
        return SaKekPayload(
            REKEY_PROTOCOL_UDP, source, destination, self.spi, self.attributes(now, signature_bits)
        )

    def key_packet(self, public_key_der: bytes) -> KeyPacket:
        """The KD KEK packet: KEK_ALGORITHM_KEY = IV | key, SIG_ALGORITHM_KEY = the public key."""
        return KeyPacket(
            KdType.KEK,
            self.spi,
            (
                DataAttribute.variable(KekKeyAttribute.KEK_ALGORITHM_KEY, self.iv + self.key),
                DataAttribute.variable(KekKeyAttribute.SIG_ALGORITHM_KEY, public_key_der),
            ),
        )


def new_kek(policy: KekPolicy, now: float, spis_in_use: set[bytes]) -> Kek:
    """Fresh key, IV and SPI from the CSPRNG.

    Neither cookie may be zero (a zero responder cookie marks the first message
    of an exchange), and the SPI differs from every KEK SPI still live on this
    server: members find the KEK of a PUSH by its cookies alone.
    """
    while True:
        spi = secrets.token_bytes(KEK_SPI_LENGTH)
        halves = spi[:COOKIE_LENGTH], spi[COOKIE_LENGTH:]
        if all(any(half) for half in halves) and spi not in spis_in_use:
            break
    cipher = policy.cipher
    return Kek(
        policy=policy,
        spi=spi,
        key=secrets.token_bytes(cipher.key_length),
        iv=secrets.token_bytes(cipher.block_size),
        created_at=now,
        expires_at=now + policy.lifetime_seconds,
    )
