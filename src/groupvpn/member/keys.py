"""What a member holds after a registration: one group SA per downloaded SA TEK.

The SA payload says what each key is for (selectors, algorithms, remaining
lifetime) and the KD payload carries the keys, matched by SPI.  A TEK the
member cannot use (unknown transform, missing keys) is reported, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from groupvpn.gdoi.pull import Registration
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, EspCipher, EspIntegrity
from groupvpn.wire.constants import IdType
from groupvpn.wire.gdoi_numbers import IpsecAttribute, KdType, TekKeyAttribute, TekProtocol
from groupvpn.wire.gdoi_sa import GdoiId, IpsecTek

_CIPHERS_BY_WIRE = {(c.transform_id, c.key_length_attribute): c for c in ESP_CIPHERS.values()}
_INTEGRITY_BY_WIRE = {i.algorithm: i for i in ESP_INTEGRITY.values()}


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
    integrity: EspIntegrity
    expires_at: float
    encryption_key: bytes = field(repr=False)
    integrity_key: bytes = field(repr=False)

    @property
    def selector(self) -> str:
        return f"{self.source} -> {self.destination}"


class UnusableTek(ValueError):
    """An SA TEK the member cannot install; the message says why."""


def group_sas(vpn: str, registration: Registration, received_at: float) -> list[GroupSa]:
    """Every usable SA TEK of a registration with its keys; raise UnusableTek otherwise."""
    keys = {
        packet.spi: {a.type: a.as_bytes() for a in packet.attributes}
        for packet in registration.key_download.packets
        if packet.kd_type == KdType.TEK
    }
    result = []
    for sat in registration.sa.teks:
        tek = sat.ipsec
        if sat.protocol_id != TekProtocol.IPSEC_ESP or tek is None:
            raise UnusableTek(f"SA TEK protocol {sat.protocol_id} is not ESP")
        material = keys.get(tek.spi)
        if material is None:
            raise UnusableTek(f"no key for SPI {tek.spi.hex()}")
        result.append(_group_sa(vpn, registration.group_id, tek, material, received_at))
    return result


def _group_sa(
    vpn: str, group_id: int, tek: IpsecTek, material: dict[int, bytes], received_at: float
) -> GroupSa:
    attributes = {a.type: a.as_int() for a in tek.attributes}
    key_length = attributes.get(IpsecAttribute.KEY_LENGTH)
    cipher = _CIPHERS_BY_WIRE.get((tek.transform_id, key_length))
    if cipher is None:
        raise UnusableTek(f"ESP transform {tek.transform_id} / key length {key_length}")
    integrity = _INTEGRITY_BY_WIRE.get(attributes.get(IpsecAttribute.AUTHENTICATION_ALGORITHM, 0))
    if integrity is None:
        raise UnusableTek("authentication algorithm missing or not supported")
    encryption_key = material.get(TekKeyAttribute.TEK_ALGORITHM_KEY, b"")
    integrity_key = material.get(TekKeyAttribute.TEK_INTEGRITY_KEY, b"")
    if len(encryption_key) != cipher.key_length or len(integrity_key) != integrity.key_length:
        raise UnusableTek(f"key lengths do not match {cipher.name}/{integrity.name}")
    lifetime = attributes.get(IpsecAttribute.SA_LIFE_DURATION, 3600)
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
        expires_at=received_at + lifetime,
        encryption_key=encryption_key,
        integrity_key=integrity_key,
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
