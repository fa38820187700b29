"""ISAKMP, IKEv1 and GDOI numbers (RFC 2407, 2408, 2409, 3547, 6407).

Names follow the RFCs so that a reader can search for them there.
"""

from __future__ import annotations

from enum import IntEnum

ISAKMP_VERSION = 0x10  # major 1, minor 0
HEADER_LENGTH = 28
GENERIC_HEADER_LENGTH = 4


class Doi(IntEnum):
    ISAKMP = 0
    IPSEC = 1  # RFC 2407
    GDOI = 2  # RFC 3547 / RFC 6407


class ExchangeType(IntEnum):
    NONE = 0
    BASE = 1
    IDENTITY_PROTECTION = 2  # Main Mode
    AUTHENTICATION_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6
    GROUPKEY_PULL = 32  # Quick Mode under the IPsec DOI
    GROUPKEY_PUSH = 33  # New Group Mode under the IPsec DOI


class Flag(IntEnum):
    ENCRYPTION = 0x01
    COMMIT = 0x02
    AUTHENTICATION_ONLY = 0x04


class PayloadType(IntEnum):
    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    SA_KEK = 15  # GDOI
    SA_TEK = 16  # GDOI
    KD = 17  # GDOI key download
    SEQ = 18  # GDOI sequence number
    POP = 19  # RFC 3547 proof of possession (removed in RFC 6407)
    NAT_D = 20  # RFC 3947
    NAT_OA = 21  # RFC 3947
    GAP = 22  # RFC 6407 group associated policy
    NAT_D_DRAFT = 130  # pre-RFC NAT-T drafts, still sent by some peers
    NAT_OA_DRAFT = 131


class NotifyType(IntEnum):
    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    RESPONDER_LIFETIME = 24576  # RFC 2407 §4.6.3
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    R_U_THERE = 36136  # RFC 3706 dead peer detection
    R_U_THERE_ACK = 36137

    @property
    def is_error(self) -> bool:
        return self.value < 16384


def notify_name(value: int) -> str:
    """Name a Notify type as operators read it, e.g. ``NO-PROPOSAL-CHOSEN``."""
    try:
        return NotifyType(value).name.replace("_", "-")
    except ValueError:
        return f"NOTIFY-{value}"


class IdType(IntEnum):
    """RFC 2407 §4.6.2.1 identification types."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


#: Identification data sizes fixed by the ID type (RFC 2407 §4.6.2.1); other types vary.
FIXED_ID_LENGTHS: dict[int, int] = {
    IdType.IPV4_ADDR: 4,
    IdType.IPV4_ADDR_SUBNET: 8,
    IdType.IPV4_ADDR_RANGE: 8,
    IdType.IPV6_ADDR: 16,
    IdType.IPV6_ADDR_SUBNET: 32,
    IdType.IPV6_ADDR_RANGE: 32,
}


class ProtocolId(IntEnum):
    """Protocol-Id in Proposal, Notify and Delete payloads (IPsec DOI numbering)."""

    ISAKMP = 1
    IPSEC_AH = 2
    IPSEC_ESP = 3
    IPCOMP = 4


KEY_IKE = 1  # the only phase 1 Transform-Id (RFC 2407 §4.4.2)


class IkeAttribute(IntEnum):
    """Phase 1 transform attribute types (RFC 2409 Appendix A)."""

    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14
    FIELD_SIZE = 15
    GROUP_ORDER = 16


class IkeEncryption(IntEnum):
    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_CBC = 4
    TRIPLE_DES_CBC = 5
    CAST_CBC = 6
    AES_CBC = 7


class IkeHash(IntEnum):
    MD5 = 1
    SHA1 = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class IkeAuthMethod(IntEnum):
    PRE_SHARED_KEY = 1
    DSS_SIGNATURES = 2
    RSA_SIGNATURES = 3
    RSA_ENCRYPTION = 4
    REVISED_RSA_ENCRYPTION = 5


class LifeType(IntEnum):
    SECONDS = 1
    KILOBYTES = 2
