"""What a member holds after a registration: group SAs and, with rekeys, the group KEK.

The SA payload says what each key is for (selectors, algorithms, remaining
lifetime) and the KD payload carries the keys, matched by SPI.  A TEK or KEK
the member cannot use (unknown algorithm, missing or wrong-sized keys, a
public key that does not parse) is reported, not guessed.

An AES-GCM key also needs this member's sender ID (RFC 6054): the one the
registration brought in its KD SID packet (:func:`registration_sender_id`).  Each
:class:`GroupSa` carries the sender ID of the registration it came with, or that
preceded the push it came in, so a key is only ever used with a SID the same key
server run handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

from groupvpn.config.model_groups import (
    DEFAULT_ACTIVATION_TIME_DELAY,
    DEFAULT_ANTI_REPLAY_TIME_WINDOW,
)
from groupvpn.gdoi.pull import Registration
from groupvpn.gdoi.push import (
    ANTI_REPLAY_WINDOW_ATTRIBUTE,
    HEARTBEAT_INTERVAL_ATTRIBUTE,
    read_group_clock,
)
from groupvpn.gdoi.push_ack import acks_requested
from groupvpn.gdoi.sender_ids import SenderId, sender_ids_of
from groupvpn.server.kek import (
    KEK_CIPHERS,
    REKEY_PROTOCOL_UDP,
    SIG_HASHES,
    KekCipher,
    SigHash,
)
from groupvpn.server.signing import public_key_fingerprint
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, EspCipher, EspIntegrity
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import IdType
from groupvpn.wire.gdoi_kd import KeyDownloadPayload, KeyPacket
from groupvpn.wire.gdoi_numbers import (
    GapAttribute,
    IpsecAttribute,
    KdType,
    KekAttribute,
    KekKeyAttribute,
    SigAlgorithm,
    TekKeyAttribute,
    TekProtocol,
)
from groupvpn.wire.gdoi_sa import GdoiId, GdoiSaPayload, IpsecTek, SaKekPayload

_CIPHERS_BY_WIRE = {(c.transform_id, c.key_length_attribute): c for c in ESP_CIPHERS.values()}
_INTEGRITY_BY_WIRE = {i.algorithm: i for i in ESP_INTEGRITY.values()}
_SIG_HASHES_BY_WIRE = {h.algorithm: h for h in SIG_HASHES.values()}
#: A KEK without KEK_KEY_LIFETIME (the Cisco reference trace sends none) lives
#: as long as the Junos default `lifetime-seconds`.
DEFAULT_KEK_LIFETIME = 3600
#: Life durations are variable-length on the wire; longer than 32 bits is nonsense
#: (and would overflow the float clock), so a lifetime is capped at 2^32 - 1 seconds.
MAX_LIFETIME = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class GroupSa:
    """One traffic SA shared by the group, as this member received it."""

    vpn: str
    group_id: int
    spi: bytes
    source: IPv4Network
    destination: IPv4Network
    source_port: int
    destination_port: int
    protocol: int
    cipher: EspCipher
    #: None for a combined cipher (AES-GCM), which authenticates by itself.
    integrity: EspIntegrity | None
    expires_at: float
    #: The cipher key; for AES-GCM the key followed by the 4-octet salt.
    encryption_key: bytes = field(repr=False)
    #: The HMAC key; empty for AES-GCM.
    integrity_key: bytes = field(repr=False)
    #: The group's `anti-replay-time-window` in seconds (None: `no-anti-replay`), as
    #: the SA TEK announces it (docs/rekey-wire.md §4); the Junos default when absent.
    anti_replay_window: int | None = DEFAULT_ANTI_REPLAY_TIME_WINDOW
    #: Counter modes (AES-GCM): this member's sender ID for the key, from the
    #: registration it came with or that preceded its push; None: it must not
    #: encrypt with the key (docs/dataplane.md §4).
    sender_id: SenderId | None = None

    @property
    def suite_name(self) -> str:
        """``aes-128-cbc/hmac-sha1-96`` or ``aes-128-gcm``."""
        if self.integrity is None:
            return self.cipher.name
        return f"{self.cipher.name}/{self.integrity.name}"

    @property
    def selector(self) -> str:
        return f"{self.source} -> {self.destination}"


@dataclass(frozen=True, slots=True)
class TekSelectors:
    """An SA TEK without its keys (what a heartbeat lists): enough for the install rule."""

    spi: bytes
    source: IPv4Network
    destination: IPv4Network
    source_port: int
    destination_port: int
    protocol: int


@dataclass(frozen=True, slots=True)
class GroupKek:
    """The group's rekey SA as this member received it: what GROUPKEY-PUSH will use."""

    vpn: str
    group_id: int
    spi: bytes  # 16 octets: the initiator and responder cookies of every PUSH
    cipher: KekCipher
    sig_hash: SigHash
    signature_bits: int  # RSA modulus size of the key server's signing key
    #: Where rekeys come from (the key server) and go to (this member or a multicast group).
    source: GdoiId
    destination: GdoiId
    #: The SEQ baseline: a PUSH is accepted only with a higher sequence number.
    sequence: int
    expires_at: float
    key: bytes = field(repr=False)
    iv: bytes = field(repr=False)
    public_key: RSAPublicKey = field(repr=False)
    #: SHA-256 of the public key as received, to compare with the key server's.
    public_key_fingerprint: str = ""
    #: The key server wants an ACK of every push under this KEK (KEK_ACK_REQUESTED).
    acks_requested: bool = False
    #: Seconds between the key server's heartbeats (HEARTBEAT_INTERVAL_ATTRIBUTE);
    #: None: it sends none, so there is nothing to watch.
    heartbeat_interval: int | None = None

    @property
    def multicast_group(self) -> tuple[IPv4Address, int] | None:
        """Where multicast rekeys arrive (group, port); None for unicast rekeys."""
        data = self.destination.data
        if self.destination.id_type != IdType.IPV4_ADDR or len(data) != 4:
            return None
        address = IPv4Address(data)
        return (address, self.destination.port) if address.is_multicast else None


class UnusableTek(ValueError):
    """An SA TEK (or KEK) the member cannot install; the message says why."""


class UnusableKek(UnusableTek):
    """An SA KEK and KD KEK packet the member cannot use together; the message says why."""


def group_sas(vpn: str, registration: Registration, received_at: float) -> list[GroupSa]:
    """Every usable SA TEK of a registration with its keys; raise UnusableTek otherwise."""
    return tek_sas(
        vpn, registration.group_id, registration.sa, registration.key_download, received_at
    )


def tek_sas(
    vpn: str,
    group_id: int,
    sa: GdoiSaPayload,
    key_download: KeyDownloadPayload,
    received_at: float,
) -> list[GroupSa]:
    """Every SA TEK of an SA payload (a registration's or a rekey's) with its key from KD.

    Raises UnusableTek for the first one the member cannot use: the message is
    taken whole or not at all.
    """
    keys = {
        packet.spi: {a.type: a.as_bytes() for a in packet.attributes}
        for packet in key_download.packets
        if packet.kd_type == KdType.TEK
    }
    result = []
    for sat in sa.teks:
        tek = sat.ipsec
        if sat.protocol_id != TekProtocol.IPSEC_ESP or tek is None:
            raise UnusableTek(f"SA TEK protocol {sat.protocol_id} is not ESP")
        material = keys.get(tek.spi)
        if material is None:
            raise UnusableTek(f"no key for SPI {tek.spi.hex()}")
        result.append(_group_sa(vpn, group_id, tek, material, received_at))
    return result


def registration_sender_id(registration: Registration) -> SenderId | None:
    """This member's sender ID from a registration's KD SID packet; None if it has none.

    We ask for one SID (groupvpn.gdoi.sender_ids); should a key server send more, the
    first is ours to use and the rest go unused.  A malformed SID packet makes the
    registration unusable (UnusableTek), like a malformed key.
    """
    try:
        found = sender_ids_of(registration.key_download)
    except ValueError as exc:
        raise UnusableTek(f"sender ID: {exc}") from exc
    return found[0] if found else None


def listed_teks(sa: GdoiSaPayload | None) -> list[TekSelectors]:
    """The ESP SA TEKs a heartbeat lists, by SPI and selectors.

    One whose selectors are not IPv4 addresses or subnets cannot be a key we
    hold (a registration with it would have been refused), so it is left out.
    """
    result = []
    for sat in sa.teks if sa is not None else ():
        tek = sat.ipsec
        if sat.protocol_id != TekProtocol.IPSEC_ESP or tek is None:
            continue
        try:
            source, destination = _network(tek.src), _network(tek.dst)
        except UnusableTek:
            continue
        result.append(
            TekSelectors(tek.spi, source, destination, tek.src.port, tek.dst.port, tek.protocol)
        )
    return result


def activation_time_delay(
    sa: GdoiSaPayload, default: float = DEFAULT_ACTIVATION_TIME_DELAY
) -> float:
    """The group's activation-time-delay: the GAP's (RFC 6407), else ``default``.

    RFC 3547 (v1) has no way to say it, so a v1 member assumes the Junos default.
    """
    if sa.gap is not None:
        for attribute in sa.gap.attributes:
            if attribute.type == GapAttribute.ACTIVATION_TIME_DELAY:
                return float(attribute.as_int())
    return default


def group_clock_ms(sa: GdoiSaPayload) -> int | None:
    """The group clock (ms) the SA TEKs carry; UnusableTek if they disagree."""
    try:
        return read_group_clock(sa)
    except ValueError as exc:
        raise UnusableTek(str(exc)) from exc


def _group_sa(
    vpn: str, group_id: int, tek: IpsecTek, material: dict[int, bytes], received_at: float
) -> GroupSa:
    attributes = {a.type: a.as_int() for a in tek.attributes}
    key_length = attributes.get(IpsecAttribute.KEY_LENGTH)
    cipher = _CIPHERS_BY_WIRE.get((tek.transform_id, key_length))
    if cipher is None:
        raise UnusableTek(f"ESP transform {tek.transform_id} / key length {key_length}")
    authentication = attributes.get(IpsecAttribute.AUTHENTICATION_ALGORITHM)
    integrity: EspIntegrity | None = None
    if cipher.combined:
        # RFC 4106 §8.4: AES-GCM takes no authentication algorithm.
        if authentication is not None:
            raise UnusableTek(f"{cipher.name} with authentication algorithm {authentication}")
    else:
        integrity = _INTEGRITY_BY_WIRE.get(authentication or 0)
        if integrity is None:
            raise UnusableTek("authentication algorithm missing or not supported")
    encryption_key = material.get(TekKeyAttribute.TEK_ALGORITHM_KEY, b"")
    integrity_key = material.get(TekKeyAttribute.TEK_INTEGRITY_KEY, b"")
    integrity_length = 0 if integrity is None else integrity.key_length
    if (
        len(encryption_key) != cipher.keying_material_length
        or len(integrity_key) != integrity_length
    ):
        suite = cipher.name if integrity is None else f"{cipher.name}/{integrity.name}"
        raise UnusableTek(f"key lengths do not match {suite}")
    lifetime = attributes.get(IpsecAttribute.SA_LIFE_DURATION, 3600)
    window = attributes.get(ANTI_REPLAY_WINDOW_ATTRIBUTE, DEFAULT_ANTI_REPLAY_TIME_WINDOW)
    return GroupSa(
        vpn=vpn,
        group_id=group_id,
        spi=tek.spi,
        source=_network(tek.src),
        destination=_network(tek.dst),
        source_port=tek.src.port,
        destination_port=tek.dst.port,
        protocol=tek.protocol,
        cipher=cipher,
        integrity=integrity,
        expires_at=received_at + min(lifetime, MAX_LIFETIME),
        encryption_key=encryption_key,
        integrity_key=integrity_key,
        anti_replay_window=window or None,
    )


def _network(identity: GdoiId) -> IPv4Network:
    data = identity.data
    try:
        if identity.id_type == IdType.IPV4_ADDR and len(data) == 4:
            return IPv4Network(f"{IPv4Address(data)}/32")
        if identity.id_type == IdType.IPV4_ADDR_SUBNET and len(data) == 8:
            # strict=False: a key server may send host bits; the mask decides.
            return IPv4Network(f"{IPv4Address(data[:4])}/{IPv4Address(data[4:])}", strict=False)
    except ValueError:
        pass  # a non-contiguous mask
    raise UnusableTek(f"selector {identity.describe()} is not an IPv4 address or subnet")


def group_kek(vpn: str, registration: Registration, received_at: float) -> GroupKek | None:
    """The registration's KEK with its key and the server's public key; None if it has none.

    Raises UnusableKek unless the SA KEK and exactly one KD KEK packet with its
    SPI agree: a known algorithm and key length, IV and key of that length, an
    RSA public key in DER that matches SIG_KEY_LENGTH.
    """
    sak = registration.sa.kek
    packets = registration.key_download.find(KdType.KEK)
    if sak is None:
        if packets:
            raise UnusableKek("KD carries a KEK key packet but the SA has no SA KEK")
        return None
    if registration.sequence is None:
        raise UnusableKek(f"KEK {sak.spi.hex()} comes without a SEQ")
    return kek_of(vpn, registration.group_id, sak, packets, registration.sequence, received_at)


def kek_of(
    vpn: str,
    group_id: int,
    sak: SaKekPayload,
    packets: tuple[KeyPacket, ...],
    sequence: int,
    received_at: float,
) -> GroupKek:
    """A KEK from its SA KEK and the KD KEK packets (a registration's or a rollover's).

    ``sequence`` is the SEQ that came with it: the baseline for the next push.
    """
    spi = sak.spi.hex()
    if len(packets) != 1 or packets[0].spi != sak.spi:
        found = ", ".join(p.spi.hex() for p in packets) or "none"
        raise UnusableKek(f"KD must carry one key packet for KEK {spi}; KEK packets: {found}")
    if sak.protocol != REKEY_PROTOCOL_UDP:
        raise UnusableKek(f"KEK {spi} rekey protocol {sak.protocol} is not UDP")
    attributes = _unique(sak.attributes, "SA KEK")
    cipher = _kek_cipher(attributes)
    sig_hash = _sig_hash(attributes)
    packet_attributes = _unique(packets[0].attributes, "KEK key packet").values()
    material = {a.type: a.as_bytes() for a in packet_attributes}
    iv_and_key = material.get(KekKeyAttribute.KEK_ALGORITHM_KEY, b"")
    if len(iv_and_key) != cipher.block_size + cipher.key_length:
        raise UnusableKek(
            f"KEK key material of {len(iv_and_key)} octets; {cipher.name} needs "
            f"{cipher.block_size} (IV) + {cipher.key_length} (key)"
        )
    public_der = material.get(KekKeyAttribute.SIG_ALGORITHM_KEY, b"")
    public_key = _public_key(public_der)
    declared = attributes.get(KekAttribute.SIG_KEY_LENGTH)
    # SIG_KEY_LENGTH means modulus bits to the Cisco reference code and DER octets to
    # Cisco IOS (gdoi-wire.md §4.2); either is fine as long as it matches the key.
    if declared is not None and declared.as_int() not in (public_key.key_size, len(public_der)):
        raise UnusableKek(
            f"SIG_KEY_LENGTH {declared.as_int()} does not match the "
            f"{public_key.key_size}-bit public key"
        )
    stated = attributes.get(KekAttribute.KEK_KEY_LIFETIME)
    lifetime = DEFAULT_KEK_LIFETIME if stated is None else min(stated.as_int(), MAX_LIFETIME)
    # Attributes we do not know (private use, or newer than RFC 6407) are ignored:
    # the ones that change how pushes are read are all checked above.
    interval = attributes.get(HEARTBEAT_INTERVAL_ATTRIBUTE)
    return GroupKek(
        vpn=vpn,
        group_id=group_id,
        spi=sak.spi,
        cipher=cipher,
        sig_hash=sig_hash,
        signature_bits=public_key.key_size,
        source=sak.src,
        destination=sak.dst,
        sequence=sequence,
        expires_at=received_at + lifetime,
        key=iv_and_key[cipher.block_size :],
        iv=iv_and_key[: cipher.block_size],
        public_key=public_key,
        public_key_fingerprint=public_key_fingerprint(public_der),
        acks_requested=acks_requested(sak),
        # 0 seconds would be a heartbeat storm, not a schedule: treated as none.
        heartbeat_interval=(interval.as_int() or None) if interval is not None else None,
    )


def _unique(attributes: tuple[DataAttribute, ...], what: str) -> dict[int, DataAttribute]:
    by_type: dict[int, DataAttribute] = {}
    for attribute in attributes:
        if attribute.type in by_type:
            raise UnusableKek(f"{what} attribute {attribute.type} appears twice")
        by_type[attribute.type] = attribute
    return by_type


def _kek_cipher(attributes: dict[int, DataAttribute]) -> KekCipher:
    if KekAttribute.KEK_MANAGEMENT_ALGORITHM in attributes:
        raise UnusableKek("KEK management algorithm (LKH) is not supported")
    algorithm = attributes.get(KekAttribute.KEK_ALGORITHM)
    if algorithm is None:
        raise UnusableKek("SA KEK has no KEK_ALGORITHM")
    length = attributes.get(KekAttribute.KEK_KEY_LENGTH)
    bits = None if length is None else length.as_int()
    for cipher in KEK_CIPHERS.values():
        if cipher.algorithm != algorithm.as_int():
            continue
        # AES needs its key length; DES/3DES have one size, which a peer may still state.
        if bits == cipher.key_length_attribute or (
            cipher.key_length_attribute is None and bits == cipher.key_length * 8
        ):
            return cipher
    shown = "" if bits is None else f" with a {bits}-bit key"
    raise UnusableKek(f"KEK algorithm {algorithm.as_int()}{shown} is not supported")


def _sig_hash(attributes: dict[int, DataAttribute]) -> SigHash:
    algorithm = attributes.get(KekAttribute.SIG_ALGORITHM)
    if algorithm is None:
        raise UnusableKek("SA KEK has no SIG_ALGORITHM")
    if algorithm.as_int() != SigAlgorithm.RSA:
        raise UnusableKek(f"signature algorithm {algorithm.as_int()} is not supported (RSA only)")
    sig_hash = attributes.get(KekAttribute.SIG_HASH_ALGORITHM)
    if sig_hash is None:
        raise UnusableKek("SA KEK has no SIG_HASH_ALGORITHM")
    found = _SIG_HASHES_BY_WIRE.get(sig_hash.as_int())
    if found is None:
        raise UnusableKek(f"signature hash algorithm {sig_hash.as_int()} is not supported")
    return found


def _public_key(der: bytes) -> RSAPublicKey:
    if not der:
        raise UnusableKek("KEK key packet has no SIG_ALGORITHM_KEY (the server's public key)")
    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnusableKek(
            f"the server's public key is not a DER SubjectPublicKeyInfo: {exc}"
        ) from exc
    if not isinstance(key, RSAPublicKey):
        raise UnusableKek(f"the server's public key is {type(key).__name__}, not RSA")
    return key
