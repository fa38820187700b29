"""Traffic encryption keys: the ESP suites a group policy can use, and fresh TEKs.

Junos names the suites in `[edit security group-vpn server ipsec proposal]`;
the wire names them with IPsec DOI numbers (RFC 2407 §4.4.4, §4.5).  The two
tables below are the only place that maps one onto the other.

AES-GCM (RFC 4106, the 16-octet ICV: ESP transform 20) is a combined mode: its SA
TEK has no AUTHENTICATION_ALGORITHM, its key packet no TEK_INTEGRITY_KEY, and its
TEK_ALGORITHM_KEY is the AES key followed by the 4-octet salt (RFC 4106 §8.1).  It is
a counter mode, so every sender needs a sender ID (groupvpn.gdoi.sender_ids): only
the v2 dialect carries them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from groupvpn.config.model_groups import DEFAULT_ANTI_REPLAY_TIME_WINDOW
from groupvpn.gdoi.push import ANTI_REPLAY_WINDOW_ATTRIBUTE
from groupvpn.gdoi.sender_ids import COUNTER_MODE_TRANSFORMS
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.gdoi_kd import KeyPacket
from groupvpn.wire.gdoi_numbers import (
    AddressPreservation,
    AuthenticationAlgorithm,
    EncapsulationMode,
    EspTransform,
    IpsecAttribute,
    KdType,
    TekKeyAttribute,
)
from groupvpn.wire.gdoi_sa import GdoiId, IpsecTek

#: RFC 4106 §8.1: the salt at the end of AES-GCM's keying material.
GCM_SALT_LENGTH = 4
#: ESP transforms that authenticate as they encrypt: AES-GCM (RFC 4106).
COMBINED_TRANSFORMS = frozenset(
    {EspTransform.ESP_AES_GCM_8, EspTransform.ESP_AES_GCM_12, EspTransform.ESP_AES_GCM_16}
)


@dataclass(frozen=True, slots=True)
class EspCipher:
    name: str
    transform_id: int
    key_length: int  # octets, without the salt of a counter mode
    #: RFC 2407 Key Length attribute, in bits, for variable-length ciphers only.
    key_length_attribute: int | None
    #: Octets of salt after the key in TEK_ALGORITHM_KEY (AES-GCM: 4, RFC 4106 §8.1).
    salt_length: int = 0

    @property
    def combined(self) -> bool:
        """A combined mode (AES-GCM): it authenticates, so no integrity algorithm goes with it."""
        return self.transform_id in COMBINED_TRANSFORMS

    @property
    def counter_mode(self) -> bool:
        """Its IV is a counter: a key shared by many senders needs sender IDs (RFC 6054)."""
        return self.transform_id in COUNTER_MODE_TRANSFORMS

    @property
    def keying_material_length(self) -> int:
        """Octets of TEK_ALGORITHM_KEY: the key, then the salt."""
        return self.key_length + self.salt_length


@dataclass(frozen=True, slots=True)
class EspIntegrity:
    name: str
    algorithm: int  # IPsec DOI Authentication Algorithm attribute
    key_length: int  # octets


ESP_CIPHERS: dict[str, EspCipher] = {
    c.name: c
    for c in (
        EspCipher("des-cbc", EspTransform.ESP_DES, 8, None),
        EspCipher("3des-cbc", EspTransform.ESP_3DES, 24, None),
        EspCipher("aes-128-cbc", EspTransform.ESP_AES_CBC, 16, 128),
        EspCipher("aes-192-cbc", EspTransform.ESP_AES_CBC, 24, 192),
        EspCipher("aes-256-cbc", EspTransform.ESP_AES_CBC, 32, 256),
        EspCipher("aes-128-gcm", EspTransform.ESP_AES_GCM_16, 16, 128, GCM_SALT_LENGTH),
        EspCipher("aes-256-gcm", EspTransform.ESP_AES_GCM_16, 32, 256, GCM_SALT_LENGTH),
    )
}

ESP_INTEGRITY: dict[str, EspIntegrity] = {
    i.name: i
    for i in (
        EspIntegrity("hmac-md5-96", AuthenticationAlgorithm.HMAC_MD5, 16),
        EspIntegrity("hmac-sha1-96", AuthenticationAlgorithm.HMAC_SHA, 20),
        EspIntegrity("hmac-sha-256-128", AuthenticationAlgorithm.HMAC_SHA2_256, 32),
    )
}


@dataclass(frozen=True, slots=True)
class GroupPolicySpec:
    """One `match-policy` of a group and the IPsec proposal its `ipsec-sa` names."""

    name: str
    source: IPv4Network
    destination: IPv4Network
    source_port: int  # 0 = any
    destination_port: int
    protocol: int  # 0 = any
    cipher: EspCipher
    #: None exactly for a combined cipher (AES-GCM).
    integrity: EspIntegrity | None
    lifetime_seconds: int

    def __post_init__(self) -> None:
        if (self.integrity is None) != self.cipher.combined:
            needs = "no" if self.cipher.combined else "an"
            raise ValueError(f"{self.cipher.name} takes {needs} integrity algorithm")


@dataclass(frozen=True, slots=True)
class Tek:
    """One traffic key: an SPI and key material for one group policy, with a lifetime."""

    policy: GroupPolicySpec
    spi: bytes
    encryption_key: bytes = field(repr=False)
    integrity_key: bytes = field(repr=False)
    created_at: float
    expires_at: float

    def remaining(self, now: float) -> int:
        """Seconds left, as sent in SA Life Duration (RFC 2407 §4.5: remaining, not total)."""
        return max(0, int(self.expires_at - now))

    def sa_tek(
        self, now: float, address_preservation: bool,
        anti_replay_window: int | None = DEFAULT_ANTI_REPLAY_TIME_WINDOW,
    ) -> IpsecTek:  # fmt: skip
        """The SA TEK body announcing this key's policy, algorithms and anti-replay window."""
        policy = self.policy
        attributes = [
            DataAttribute.basic(IpsecAttribute.SA_LIFE_TYPE, 1),  # seconds
            DataAttribute.basic_or_variable(IpsecAttribute.SA_LIFE_DURATION, self.remaining(now)),
            DataAttribute.basic(IpsecAttribute.ENCAPSULATION_MODE, EncapsulationMode.TUNNEL),
        ]
        if policy.integrity is not None:  # AES-GCM authenticates by itself (RFC 4106 §8.4)
            attributes.append(
                DataAttribute.basic(
                    IpsecAttribute.AUTHENTICATION_ALGORITHM, policy.integrity.algorithm
                )
            )
        if policy.cipher.key_length_attribute is not None:
            attributes.append(
                DataAttribute.basic(IpsecAttribute.KEY_LENGTH, policy.cipher.key_length_attribute)
            )
        if address_preservation:
            # RFC 5374 tunnel mode with address preservation, announced the RFC 6407 way.
            attributes.append(
                DataAttribute.basic(
                    IpsecAttribute.ADDRESS_PRESERVATION,
                    AddressPreservation.SOURCE_AND_DESTINATION,
                )
            )
        attributes.append(
            DataAttribute.basic(ANTI_REPLAY_WINDOW_ATTRIBUTE, anti_replay_window or 0)
        )
        return IpsecTek(
            policy.protocol,
            GdoiId.ipv4_subnet(str(policy.source), policy.source_port),
            GdoiId.ipv4_subnet(str(policy.destination), policy.destination_port),
            policy.cipher.transform_id,
            self.spi,
            tuple(attributes),
        )

    def key_packet(self) -> KeyPacket:
        """KD TEK packet: the cipher key (AES-GCM: key and salt) and the HMAC key, if any."""
        attributes = [
            DataAttribute.variable(TekKeyAttribute.TEK_ALGORITHM_KEY, self.encryption_key)
        ]
        if self.policy.integrity is not None:
            attributes.append(
                DataAttribute.variable(TekKeyAttribute.TEK_INTEGRITY_KEY, self.integrity_key)
            )
        return KeyPacket(KdType.TEK, self.spi, tuple(attributes))


def new_tek(policy: GroupPolicySpec, now: float, spis_in_use: set[bytes]) -> Tek:
    """Fresh key material and a fresh SPI from the CSPRNG.

    SPIs 0-255 are reserved (RFC 4303 §2.1) and an SPI is never reused while an
    older key with it may still be installed somewhere in the group.
    """
    while True:
        spi = secrets.token_bytes(4)
        if int.from_bytes(spi, "big") > 255 and spi not in spis_in_use:
            break
    return Tek(
        policy=policy,
        spi=spi,
        encryption_key=secrets.token_bytes(policy.cipher.keying_material_length),
        integrity_key=(
            secrets.token_bytes(policy.integrity.key_length) if policy.integrity else b""
        ),
        created_at=now,
        expires_at=now + policy.lifetime_seconds,
    )
