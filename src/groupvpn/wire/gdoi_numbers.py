"""GDOI numbers (RFC 3547, RFC 6407) and the IPsec DOI values carried in SA TEK payloads.

Tables follow gdoi-wire.md §4.2-§4.5; names follow the RFCs so a reader can
search for them there.  Values marked "v2" exist only in RFC 6407.
"""

from __future__ import annotations

from enum import IntEnum


class KekAttribute(IntEnum):
    """SA KEK attribute types (RFC 3547 §5.3.1-5.3.9, RFC 6407 §5.3)."""

    KEK_MANAGEMENT_ALGORITHM = 1
    KEK_ALGORITHM = 2  # mandatory
    KEK_KEY_LENGTH = 3  # bits
    KEK_KEY_LIFETIME = 4  # seconds, variable form
    SIG_HASH_ALGORITHM = 5
    SIG_ALGORITHM = 6  # mandatory
    SIG_KEY_LENGTH = 7
    KE_OAKLEY_GROUP = 8  # RFC 3547 only


class KekManagementAlgorithm(IntEnum):
    LKH = 1


class KekAlgorithm(IntEnum):
    """KEK_ALGORITHM values (all CBC mode)."""

    DES = 1
    TRIPLE_DES = 2
    AES = 3


class SigHashAlgorithm(IntEnum):
    MD5 = 1
    SHA1 = 2
    SHA256 = 3  # v2
    SHA384 = 4  # v2
    SHA512 = 5  # v2


class SigAlgorithm(IntEnum):
    RSA = 1
    DSS = 2
    ECDSS = 3
    ECDSA_256 = 4  # v2
    ECDSA_384 = 5  # v2
    ECDSA_521 = 6  # v2


class GapAttribute(IntEnum):
    """Group Associated Policy attributes (RFC 6407, v2 only)."""

    ACTIVATION_TIME_DELAY = 1
    DEACTIVATION_TIME_DELAY = 2
    SENDER_ID_REQUEST = 3


class TekProtocol(IntEnum):
    """SA TEK Protocol-ID."""

    IPSEC_ESP = 1
    IPSEC_AH = 2  # v2
    IEC_61850 = 3  # RFC 8052


class IpsecAttribute(IntEnum):
    """IPsec DOI SA attributes carried in an ESP/AH SA TEK (RFC 2407 §4.5, RFC 6407)."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTHENTICATION_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10
    EXTENDED_SEQUENCE_NUMBER = 11
    AUTH_KEY_LENGTH = 12
    SIGNATURE_ENCODING = 13
    ADDRESS_PRESERVATION = 14  # RFC 6407 for RFC 5374
    SA_DIRECTION = 15  # RFC 6407 for RFC 5374


class EncapsulationMode(IntEnum):
    TUNNEL = 1
    TRANSPORT = 2
    UDP_ENCAPSULATED_TUNNEL = 3
    UDP_ENCAPSULATED_TRANSPORT = 4


class AuthenticationAlgorithm(IntEnum):
    HMAC_MD5 = 1
    HMAC_SHA = 2
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES_XCBC_MAC = 9


class AddressPreservation(IntEnum):
    NONE = 1
    SOURCE_ONLY = 2
    DESTINATION_ONLY = 3
    SOURCE_AND_DESTINATION = 4


class SaDirection(IntEnum):
    SENDER_ONLY = 1
    RECEIVER_ONLY = 2
    SYMMETRIC = 3


class EspTransform(IntEnum):
    """IPsec DOI ESP transform IDs (RFC 2407 §4.4.4 and the IANA registry)."""

    ESP_DES = 2
    ESP_3DES = 3
    ESP_NULL = 11
    ESP_AES_CBC = 12
    ESP_AES_CTR = 13
    ESP_AES_CCM_8 = 14
    ESP_AES_CCM_12 = 15
    ESP_AES_CCM_16 = 16
    ESP_AES_GCM_8 = 18
    ESP_AES_GCM_12 = 19
    ESP_AES_GCM_16 = 20
    ESP_NULL_AUTH_AES_GMAC = 23


class AhTransform(IntEnum):
    """IPsec DOI AH transform IDs (RFC 2407 §4.4.3, RFC 4868)."""

    AH_MD5 = 2
    AH_SHA = 3
    AH_SHA2_256 = 5
    AH_SHA2_384 = 6
    AH_SHA2_512 = 7


class KdType(IntEnum):
    """Key Download key packet types."""

    TEK = 1
    KEK = 2
    LKH = 3
    SID = 4  # v2


class TekKeyAttribute(IntEnum):
    TEK_ALGORITHM_KEY = 1  # cipher key (for counter/GCM modes: key | 4-octet salt)
    TEK_INTEGRITY_KEY = 2
    TEK_SOURCE_AUTH_KEY = 3


class KekKeyAttribute(IntEnum):
    KEK_ALGORITHM_KEY = 1  # IV | key
    SIG_ALGORITHM_KEY = 2  # DER SubjectPublicKeyInfo of the GCKS


class LkhKeyAttribute(IntEnum):
    LKH_DOWNLOAD_ARRAY = 1
    LKH_UPDATE_ARRAY = 2
    LKH_SIG_ALGORITHM_KEY = 3


class SidAttribute(IntEnum):
    NUMBER_OF_SID_BITS = 1  # basic
    SID_VALUE = 2  # variable
