"""GROUPKEY-PUSH (exchange 33): rekeys and heartbeats, built by the key server, opened by members.

::

    v2 (RFC 6407):  HDR*, SEQ, [D,] [SA, KD,] SIG
    v1 (RFC 3547):  HDR*, SEQ, [D,] SA, KD, SIG              (D: RFC 3547 §4.6)
    heartbeat:      HDR*, SEQ, [SA(SA TEKs only),] SIG         (ours: docs/rekey-wire.md)

Exactly as gdoi-wire.md §6.1-§6.3 and the Cisco reference trace (§9) have it: the
header's two cookies are the KEK SPI, flags E, message ID 0; the signature is
``hash("rekey" | HDR' | every payload before SIG, as sent)`` with HDR' the header
with E set and Length = 28 + all payloads including SIG, before padding; then the
payloads are zero-padded to the cipher block and CBC-encrypted with the KEK.  The IV
is the KEK's static IV from KEK_ALGORITHM_KEY for every push: the Cisco reference
("RFC 3547 specifies a static IV") does so, and it is the only behaviour a trace
shows; what RFC 6407 peers do is unverified (gdoi-wire.md §6.3).

A push is built and signed once and then sent as many copies as there are
destinations, so :func:`build_push` returns the datagram.  A KEK rollover is a push
whose SA carries an SA KEK with a new SPI and whose KD carries the KEK packet for it
(§6.4); it is still encrypted with the current KEK.

:func:`open_push` never raises for what a peer sends: every failure is a
:class:`PushRejected` with a :class:`PushRejection` reason.  It applies nothing; the
member core does, after it got a :class:`PushOpened`.  Nothing here touches a
socket or a clock: times (the group clock) are passed in.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from groupvpn.crypto.ciphers import CIPHERS, CipherSuite, cbc_decrypt, cbc_encrypt
from groupvpn.gdoi.push_sig import (
    DEFAULT_SIGNATURE_ENCODING,
    PushSigner,
    SigHashSpec,
    SignatureEncoding,
    verify_digest,
)
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import HEADER_LENGTH, Doi, ExchangeType, Flag, PayloadType
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.gdoi import (
    GdoiSaPayload,
    KeyDownloadPayload,
    SaKekPayload,
    SaTekPayload,
    SeqPayload,
)
from groupvpn.wire.gdoi_numbers import KdType
from groupvpn.wire.gdoi_sa import KEK_SPI_LENGTH, IpsecTek
from groupvpn.wire.message import IsakmpHeader, decode_payloads, encode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, DeletePayload, Payload, SigPayload

#: Signed data starts with these five ASCII octets, no NUL (gdoi-wire.md §6.2).
SIGNATURE_PREFIX = b"rekey"
PUSH_MESSAGE_ID = 0
MAX_SEQUENCE = 0xFFFFFFFF

#: The group clock (docs/rekey-wire.md): an IPsec DOI SA attribute from the private
#: use range 32001-32767 (RFC 2407 §4.5; tshark names it "Private use"), variable
#: form, 8 octets: the key server's group time in milliseconds, unsigned, big-endian.
#: Carried in every SA TEK of a push, rekey or heartbeat.
GROUP_CLOCK_ATTRIBUTE = 32001

#: The group's `anti-replay-time-window` (docs/rekey-wire.md §4): an IPsec DOI SA
#: attribute from the same private use range, basic form, seconds; 0 for
#: `no-anti-replay`.  Carried in every SA TEK our key server sends, so members check
#: each key's packets against its group's window.  Absent (another vendor's server):
#: the Junos default, 100 s.
ANTI_REPLAY_WINDOW_ATTRIBUTE = 32003
GROUP_CLOCK_LENGTH = 8

#: The heartbeat interval (docs/rekey-wire.md §3): a KEK attribute from the same
#: private use range, basic form, seconds; in the SA KEK of a group that sends
#: heartbeats, so a member knows when to expect them.  Absent: no heartbeats.
HEARTBEAT_INTERVAL_ATTRIBUTE = 32002

#: Which payload sequences each dialect accepts, one letter per payload type.  v1 is
#: RFC 3547's SEQ, D*, SA, KD, SIG (§4: the push; §4.6: "one or more Delete payloads
#: MAY follow the SEQ payload", and SA and KD MUST be omitted when nothing else is
#: sent) plus our heartbeats (SEQ, [SA,] SIG); v2 is RFC 6407's SEQ, D*, [SA, KD,] SIG
#: plus the heartbeat's SA without KD.  The two dialects accept the same sequences.
#: CERT (RFC 3547/6407 optional) is not supported: the member has the key server's
#: public key from KD.
_LETTERS: dict[int, str] = {
    PayloadType.SEQ: "Q",
    PayloadType.DELETE: "D",
    PayloadType.SA: "S",
    PayloadType.KD: "K",
    PayloadType.SIG: "G",
}
PUSH_SHAPES: dict[str, re.Pattern[str]] = {
    "v1": re.compile(r"QD*(?:SK?)?G"),
    "v2": re.compile(r"QD*(?:SK?)?G"),
}


@dataclass(frozen=True, slots=True)
class KekMaterial:
    """What encrypts pushes: the KEK SPI (the header cookies), its CBC cipher, key and IV."""

    spi: bytes
    cipher: CipherSuite
    key: bytes = field(repr=False)
    iv: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.spi) != KEK_SPI_LENGTH:
            raise ValueError(f"a KEK SPI has {KEK_SPI_LENGTH} octets, not {len(self.spi)}")
        if len(self.key) != self.cipher.key_length or len(self.iv) != self.cipher.block_size:
            raise ValueError(f"{self.cipher.name} KEK needs a key and IV of its sizes")

    @classmethod
    def named(cls, spi: bytes, cipher: str, key: bytes, iv: bytes) -> KekMaterial:
        """From the Junos cipher name (``KekCipher.name``), e.g. ``"aes-128-cbc"``."""
        return cls(spi, CIPHERS[cipher], key, iv)


@dataclass(frozen=True, slots=True)
class PushContent:
    """What one push says.  ``group_clock`` (ms) is stamped into every SA TEK of ``sa``."""

    sequence: int
    sa: GdoiSaPayload | None = None
    key_download: KeyDownloadPayload | None = None
    deletes: tuple[DeletePayload, ...] = ()
    group_clock: int | None = None


@dataclass(frozen=True, slots=True)
class PushReceiver:
    """What a member needs to open the pushes of one KEK (found by its SPI)."""

    kek: KekMaterial
    public_key: RSAPublicKey = field(repr=False)  # from the KD KEK packet at registration
    sig_hash: SigHashSpec
    last_sequence: int  # the last accepted SEQ (PULL 4's SEQ before any push)
    dialect: Dialect
    encoding: SignatureEncoding = DEFAULT_SIGNATURE_ENCODING


class PushRejection(enum.StrEnum):
    MALFORMED = "malformed"  # not a well-formed GROUPKEY-PUSH, or content that contradicts itself
    UNKNOWN_KEK = "unknown-kek"  # the cookies name no KEK we hold
    BAD_SIGNATURE = "bad-signature"
    REPLAYED_SEQ = "replayed-seq"  # authentic, but SEQ is not above the last accepted one


@dataclass(frozen=True, slots=True)
class PushRejected:
    reason: PushRejection
    detail: str  # for logs: built from numbers and our own words, never peer text
    kek_spi: bytes | None = None


@dataclass(frozen=True, slots=True)
class PushOpened:
    """A verified push, applied by nobody yet.  Key packets show no key octets in repr."""

    kek_spi: bytes
    sequence: int
    sa: GdoiSaPayload | None
    key_download: KeyDownloadPayload | None
    deletes: tuple[DeletePayload, ...]
    group_clock: int | None  # ms, when the SA TEKs carry it

    @property
    def is_heartbeat(self) -> bool:
        """No keys and no deletes: a heartbeat (docs/rekey-wire.md)."""
        return self.key_download is None and not self.deletes

    @property
    def carries_new_teks(self) -> bool:
        return self.key_download is not None and bool(self.key_download.find(KdType.TEK))

    @property
    def new_kek(self) -> SaKekPayload | None:
        """The SA KEK of a KEK rollover (its KEK packet is in ``key_download``)."""
        kek = self.sa.kek if self.sa is not None else None
        return kek if kek is not None and kek.spi != self.kek_spi else None

    @property
    def tek_spis(self) -> tuple[bytes, ...]:
        """SPIs of the ESP/AH SA TEKs listed (a heartbeat's summary of the current keys)."""
        if self.sa is None:
            return ()
        return tuple(sat.spec.spi for sat in self.sa.teks if isinstance(sat.spec, IpsecTek))


# --- the group clock in SA TEKs -------------------------------------------------------


def stamp_group_clock(sa: GdoiSaPayload, group_clock: int, dialect: Dialect) -> GdoiSaPayload:
    """``sa`` with GROUP_CLOCK = ``group_clock`` in every ESP/AH SA TEK (replacing any)."""
    if not 0 <= group_clock < 1 << (8 * GROUP_CLOCK_LENGTH):
        raise ValueError(f"group clock {group_clock} does not fit {GROUP_CLOCK_LENGTH} octets")
    value = group_clock.to_bytes(GROUP_CLOCK_LENGTH, "big")
    teks = []
    for sat in sa.teks:
        if isinstance(sat.spec, IpsecTek):
            kept = tuple(a for a in sat.spec.attributes if a.type != GROUP_CLOCK_ATTRIBUTE)
            clock = DataAttribute.variable(GROUP_CLOCK_ATTRIBUTE, value)
            sat = dataclasses.replace(
                sat, spec=dataclasses.replace(sat.spec, attributes=(*kept, clock))
            )
        teks.append(dataclasses.replace(sat, id_length_octets=dialect.sat_id_length_octets))
    return dataclasses.replace(sa, teks=tuple(teks))


def read_group_clock(sa: GdoiSaPayload | None) -> int | None:
    """The GROUP_CLOCK the SA TEKs carry; None if none does.  ValueError if they disagree."""
    found: set[bytes] = set()
    for sat in sa.teks if sa is not None else ():
        if isinstance(sat.spec, IpsecTek):
            for attribute in sat.spec.attributes:
                if attribute.type == GROUP_CLOCK_ATTRIBUTE:
                    if not isinstance(attribute.value, bytes) or len(attribute.value) != 8:
                        raise ValueError("GROUP_CLOCK is not an 8-octet variable attribute")
                    found.add(attribute.value)
    if len(found) > 1:
        raise ValueError("SA TEKs carry different group clocks")
    return int.from_bytes(found.pop(), "big") if found else None


# --- building (key server) ------------------------------------------------------------


def build_push(
    content: PushContent,
    kek: KekMaterial,
    signer: PushSigner,
    sig_hash: SigHashSpec,
    *,
    dialect: Dialect,
    encoding: SignatureEncoding = DEFAULT_SIGNATURE_ENCODING,
) -> bytes:
    """Sign and encrypt one push; the datagram every destination gets a copy of.

    ValueError if ``content`` is not a push of ``dialect`` (a caller bug).
    """
    if not 1 <= content.sequence <= MAX_SEQUENCE:
        raise ValueError(f"SEQ {content.sequence} outside 1..{MAX_SEQUENCE}")
    sa = content.sa
    if sa is not None:
        if content.group_clock is not None:
            sa = stamp_group_clock(sa, content.group_clock, dialect)
        else:
            sa = stamp_dialect(sa, dialect)
    payloads: list[Payload] = [SeqPayload(content.sequence), *content.deletes]
    payloads += [p for p in (sa, content.key_download) if p is not None]
    if problem := _shape_problem([p.payload_type for p in payloads] + [PayloadType.SIG], dialect):
        raise ValueError(problem)
    if problem := _kek_problem(sa, content.key_download, kek.spi):
        raise ValueError(problem)
    # Encode with a placeholder signature of the final length, so the payload before
    # SIG already names SIG as its Next Payload and HDR' knows the whole length.
    size = signer.signature_length
    first, whole = encode_payloads([*payloads, SigPayload(bytes(size))])
    signed = whole[: -(4 + size)]
    header = _header(kek.spi, first, HEADER_LENGTH + len(whole))
    digest = sig_hash.digest(SIGNATURE_PREFIX + header.encode() + signed)
    signature = signer.sign_digest(digest, sig_hash, encoding)
    if len(signature) != size:
        raise ValueError(f"signer returned {len(signature)} octets, announced {size}")
    plaintext = whole[:-size] + signature
    plaintext += bytes(-len(plaintext) % kek.cipher.block_size)
    ciphertext = cbc_encrypt(kek.cipher, kek.key, kek.iv, plaintext)
    sent = dataclasses.replace(header, length=HEADER_LENGTH + len(ciphertext))
    return sent.encode() + ciphertext


def build_heartbeat(
    sequence: int,
    teks: Iterable[SaTekPayload],
    group_clock: int,
    kek: KekMaterial,
    signer: PushSigner,
    sig_hash: SigHashSpec,
    *,
    dialect: Dialect,
    encoding: SignatureEncoding = DEFAULT_SIGNATURE_ENCODING,
) -> bytes:
    """A heartbeat: SEQ, the current SA TEKs (remaining lifetimes, group clock), SIG.

    ``teks`` are the SA TEK payloads of the group's current keys as a registration
    would carry them; without any the heartbeat is SEQ, SIG.
    """
    sats = tuple(teks)
    sa = GdoiSaPayload(Doi.GDOI, 0, teks=sats) if sats else None
    content = PushContent(sequence, sa=sa, group_clock=group_clock)
    return build_push(content, kek, signer, sig_hash, dialect=dialect, encoding=encoding)


def stamp_dialect(sa: GdoiSaPayload, dialect: Dialect) -> GdoiSaPayload:
    """``sa`` with its SA TEKs set to encode with ``dialect``'s ID Data Len width."""
    width = dialect.sat_id_length_octets
    teks = tuple(dataclasses.replace(sat, id_length_octets=width) for sat in sa.teks)
    return dataclasses.replace(sa, teks=teks)


def _header(spi: bytes, first: int, length: int) -> IsakmpHeader:
    half = KEK_SPI_LENGTH // 2
    return IsakmpHeader(
        spi[:half], spi[half:], first, ExchangeType.GROUPKEY_PUSH, Flag.ENCRYPTION,
        PUSH_MESSAGE_ID, length,
    )  # fmt: skip


def _shape_problem(types: list[int], dialect: Dialect) -> str | None:
    letters = "".join(_LETTERS.get(t, "?") for t in types)
    if PUSH_SHAPES[dialect.name].fullmatch(letters):
        return None
    names = ", ".join(_payload_name(t) for t in types)
    return f"payloads {names} are not a {dialect.name} GROUPKEY-PUSH"


def _payload_name(payload_type: int) -> str:
    try:
        return PayloadType(payload_type).name
    except ValueError:
        return f"type-{payload_type}"


def _kek_problem(
    sa: GdoiSaPayload | None, key_download: KeyDownloadPayload | None, spi: bytes
) -> str | None:
    """A KEK packet comes only with an SA KEK for a new SPI, and that SA KEK only with it."""
    packets = key_download.find(KdType.KEK) if key_download is not None else ()
    kek = sa.kek if sa is not None else None
    if kek is None or kek.spi == spi:
        return "KD carries a KEK packet but the SA names no new KEK" if packets else None
    if len(packets) != 1 or packets[0].spi != kek.spi:
        return f"new KEK {kek.spi.hex()} needs exactly one KD KEK packet with its SPI"
    return None


# --- opening (member) -----------------------------------------------------------------


def open_push(data: bytes, receivers: Mapping[bytes, PushReceiver]) -> PushOpened | PushRejected:
    """Decrypt, decode strictly, verify SIG, check SEQ; never raises for peer input."""
    try:
        header = pull_header(data)
    except DecodeError as exc:
        return PushRejected(PushRejection.MALFORMED, f"header: {exc}")
    if header.exchange_type != ExchangeType.GROUPKEY_PUSH:
        return PushRejected(PushRejection.MALFORMED, f"exchange type {header.exchange_type}")
    spi = header.initiator_cookie + header.responder_cookie
    if header.flags != Flag.ENCRYPTION or header.message_id != PUSH_MESSAGE_ID:
        detail = f"flags 0x{header.flags:02x}, message ID {header.message_id:#010x}"
        return PushRejected(PushRejection.MALFORMED, detail, spi)
    receiver = receivers.get(spi)
    if receiver is None:
        return PushRejected(PushRejection.UNKNOWN_KEK, f"KEK SPI {spi.hex()}", spi)
    kek, block = receiver.kek, receiver.kek.cipher.block_size
    ciphertext = data[HEADER_LENGTH:]
    if not ciphertext or len(ciphertext) % block:
        detail = f"{len(ciphertext)} encrypted octets are not whole {block}-octet blocks"
        return PushRejected(PushRejection.MALFORMED, detail, spi)
    plaintext = cbc_decrypt(kek.cipher, kek.key, kek.iv, ciphertext)
    try:
        ctx = DecodeContext(ExchangeType.GROUPKEY_PUSH, receiver.dialect)
        chain = decode_payloads(plaintext, header.next_payload, ctx, allow_trailing=True)
    except DecodeError as exc:
        return PushRejected(PushRejection.MALFORMED, f"payloads: {exc}", spi)
    if len(chain.trailing) >= block:  # padding is shorter than a block; more is junk
        detail = f"{len(chain.trailing)} octets after the last payload"
        return PushRejected(PushRejection.MALFORMED, detail, spi)
    if problem := _shape_problem([p.payload_type for p in chain.payloads], receiver.dialect):
        return PushRejected(PushRejection.MALFORMED, problem, spi)
    signature = chain.payloads[-1]
    assert isinstance(signature, SigPayload)  # the shape ends with SIG
    signed = b"".join(chain.raw[:-1])
    unpadded = HEADER_LENGTH + len(signed) + len(chain.raw[-1])
    hdr = dataclasses.replace(header, flags=Flag.ENCRYPTION, length=unpadded)
    digest = receiver.sig_hash.digest(SIGNATURE_PREFIX + hdr.encode() + signed)
    if not verify_digest(
        receiver.public_key, signature.data, digest, receiver.sig_hash, receiver.encoding
    ):
        return PushRejected(PushRejection.BAD_SIGNATURE, f"KEK SPI {spi.hex()}", spi)
    seq = chain.payloads[0]
    assert isinstance(seq, SeqPayload)
    if seq.sequence <= receiver.last_sequence:
        detail = f"SEQ {seq.sequence}, last accepted {receiver.last_sequence}"
        return PushRejected(PushRejection.REPLAYED_SEQ, detail, spi)
    sa = next((p for p in chain.payloads if isinstance(p, GdoiSaPayload)), None)
    kd = next((p for p in chain.payloads if isinstance(p, KeyDownloadPayload)), None)
    deletes = tuple(p for p in chain.payloads if isinstance(p, DeletePayload))
    try:
        clock = read_group_clock(sa)
    except ValueError as exc:
        return PushRejected(PushRejection.MALFORMED, str(exc), spi)
    if problem := _kek_problem(sa, kd, spi):
        return PushRejected(PushRejection.MALFORMED, problem, spi)
    return PushOpened(spi, seq.sequence, sa, kd, deletes, clock)
