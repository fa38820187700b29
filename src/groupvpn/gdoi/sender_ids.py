"""Sender IDs for counter-mode group SAs (RFC 6054), handed out in GROUPKEY-PULL (RFC 6407).

A counter mode (AES-GCM here) must never use a nonce twice under one key, and a group
key has many senders.  RFC 6054 §3 splits the 8-octet ESP IV of such a group SA in
two: the leftmost bits are the sender's **Sender ID (SID)**, which the key server
gives each sender and no other, the remaining bits a counter the sender runs on its
own.  Two senders then never share an IV, and one never repeats its counter.

RFC 6407 carries the SIDs in the registration (docs/rekey-wire.md §6):

* message 3, ``HDR*, HASH(3), GAP``: a member that is offered a counter-mode TEK asks
  for SIDs with the GAP attribute ``SENDER_ID_REQUEST`` (RFC 6407 §5.5, its value
  the number of SIDs wanted; we ask for one).  HASH(3) covers the GAP (§3.2);
* message 4, ``HDR*, HASH(4), [SEQ,] KD``: the key server answers with a KD key
  packet of type SID (4) with SPI size 0 (RFC 6407 §5.6.4): ``NUMBER_OF_SID_BITS``
  once (basic), then one ``SID_VALUE`` (variable) per SID.  SIDs belong to one
  member, so they never travel in a GROUPKEY-PUSH (§5.6.4, and the Cisco
  reference refuses them there).

Our choices, each a constant here:

* :data:`SID_BITS` = 24: 16,777,216 SIDs per group per key-server run, and a 40-bit
  counter per key and sender (2^40 packets: 127 days at 100,000 packets a second,
  far beyond any key lifetime, which is at most 24 hours).
* ``SID_VALUE`` is sent as a 4-octet unsigned big-endian integer, the widest length
  the Cisco reference member reads (it reads 2 or 4); we read 1 to 8 octets.  The
  RFC's text on the value's length could not be checked here [UNVERIFIED].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.gdoi_kd import KeyDownloadPayload, KeyPacket
from groupvpn.wire.gdoi_numbers import EspTransform, GapAttribute, KdType, SidAttribute
from groupvpn.wire.gdoi_sa import GapPayload, GdoiSaPayload

#: Bits of the SIDs our key server hands out (NUMBER_OF_SID_BITS).
SID_BITS = 24
#: Octets of the SID_VALUE attribute we send.
SID_VALUE_OCTETS = 4
#: The ESP IV of a counter mode: 8 octets (RFC 4106 §3.1, RFC 3686 §3.1, RFC 4309 §3.1).
IV_BITS = 64
#: A SID of more bits would leave a counter too short to be of use; of none, no SID.
MIN_SID_BITS, MAX_SID_BITS = 1, 32

#: ESP transforms whose IV is a counter that must not repeat under a key shared by
#: several senders (RFC 6054 §1): AES-CTR, AES-CCM, AES-GCM and AES-GMAC.
COUNTER_MODE_TRANSFORMS = frozenset(
    {
        EspTransform.ESP_AES_CTR,
        EspTransform.ESP_AES_CCM_8,
        EspTransform.ESP_AES_CCM_12,
        EspTransform.ESP_AES_CCM_16,
        EspTransform.ESP_AES_GCM_8,
        EspTransform.ESP_AES_GCM_12,
        EspTransform.ESP_AES_GCM_16,
        EspTransform.ESP_NULL_AUTH_AES_GMAC,
    }
)


@dataclass(frozen=True, slots=True)
class SenderId:
    """One SID and its width: the leftmost ``bits`` bits of every IV this member sends.

    ``IV = value << counter_bits | counter`` with ``counter_bits = 64 - bits``
    (RFC 6054 §3); the counter runs 0 .. :attr:`max_counter` per key.
    """

    value: int
    bits: int

    def __post_init__(self) -> None:
        if not MIN_SID_BITS <= self.bits <= MAX_SID_BITS:
            raise ValueError(
                f"a sender ID of {self.bits} bits (we take {MIN_SID_BITS} to {MAX_SID_BITS})"
            )
        if not 0 <= self.value < 1 << self.bits:
            raise ValueError(f"sender ID {self.value} does not fit {self.bits} bits")

    @property
    def counter_bits(self) -> int:
        return IV_BITS - self.bits

    @property
    def max_counter(self) -> int:
        """The last counter value an IV can carry with this SID."""
        return (1 << self.counter_bits) - 1

    @property
    def iv_prefix(self) -> int:
        """The IV (a 64-bit integer) of counter 0: the SID in the leftmost bits."""
        return self.value << self.counter_bits

    def iv(self, counter: int) -> bytes:
        if not 0 <= counter <= self.max_counter:
            raise ValueError(f"IV counter {counter} does not fit {self.counter_bits} bits")
        return (self.iv_prefix | counter).to_bytes(IV_BITS // 8, "big")

    def __str__(self) -> str:
        return f"{self.value} ({self.bits} bits)"


def offers_counter_mode(sa: GdoiSaPayload) -> bool:
    """Whether an SA payload offers an ESP TEK with a counter-mode transform."""
    return any(
        sat.ipsec is not None and sat.ipsec.transform_id in COUNTER_MODE_TRANSFORMS
        for sat in sa.teks
    )


def sender_id_request(count: int = 1) -> GapPayload:
    """The GAP of PULL message 3 that asks for ``count`` SIDs (RFC 6407 §5.5)."""
    if not 1 <= count <= 0xFFFF:
        raise ValueError(f"cannot ask for {count} sender IDs")
    return GapPayload((DataAttribute.basic(GapAttribute.SENDER_ID_REQUEST, count),))


def requested_sender_ids(gap: GapPayload | None) -> int:
    """How many SIDs a member's message 3 GAP asks for (0: none, or no GAP)."""
    if gap is None:
        return 0
    return max(
        (a.as_int() for a in gap.attributes if a.type == GapAttribute.SENDER_ID_REQUEST),
        default=0,
    )


def sid_key_packet(ids: Sequence[SenderId]) -> KeyPacket:
    """The KD key packet of type SID for one member's SIDs (all of one width)."""
    if not ids or len({sid.bits for sid in ids}) != 1:
        raise ValueError("a SID key packet carries one or more SIDs of one width")
    return KeyPacket(
        KdType.SID,
        b"",
        (
            DataAttribute.basic(SidAttribute.NUMBER_OF_SID_BITS, ids[0].bits),
            *(
                DataAttribute.variable(
                    SidAttribute.SID_VALUE, sid.value.to_bytes(SID_VALUE_OCTETS, "big")
                )
                for sid in ids
            ),
        ),
    )


def sender_ids_of(key_download: KeyDownloadPayload) -> tuple[SenderId, ...]:
    """The SIDs of a KD's SID key packets, in order; ValueError if one is malformed.

    A SID key packet has NUMBER_OF_SID_BITS exactly once and at least one SID_VALUE
    of 1 to 8 octets whose value fits that many bits; nothing else.
    """
    found: list[SenderId] = []
    for packet in key_download.find(KdType.SID):
        if packet.spi:
            raise ValueError("a SID key packet has SPI size 0")
        widths = [a for a in packet.attributes if a.type == SidAttribute.NUMBER_OF_SID_BITS]
        values = [a for a in packet.attributes if a.type == SidAttribute.SID_VALUE]
        others = sorted(
            {a.type for a in packet.attributes} - {SidAttribute.NUMBER_OF_SID_BITS,
                                                    SidAttribute.SID_VALUE}
        )  # fmt: skip
        if others:
            raise ValueError(f"SID key packet attribute {others[0]} is not a SID attribute")
        if len(widths) != 1:
            raise ValueError(f"SID key packet has {len(widths)} NUMBER_OF_SID_BITS, not 1")
        if not values:
            raise ValueError("SID key packet has no SID_VALUE")
        bits = widths[0].as_int()
        for value in values:
            octets = value.as_bytes()
            if not 1 <= len(octets) <= 8:
                raise ValueError(f"SID_VALUE of {len(octets)} octets")
            found.append(SenderId(int.from_bytes(octets, "big"), bits))
    return tuple(found)
