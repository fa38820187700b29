"""A member core and a key server on a fake clock, with rekeys built by hand.

The key server core answers phase 1 and GROUPKEY-PULL; rekeys and heartbeats are
built here with the server's own pieces (its KEK and TEKs from server/kek.py and
server/tek.py, its signing key, gdoi/push.py), so each test says exactly which
push arrives when.  Pushes the server core might send by itself are held back,
and the member's ACKs are caught here (``acks``) instead of reaching the server.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.gdoi.pull import GroupOffer, PullError
from groupvpn.gdoi.push import (
    HEARTBEAT_INTERVAL_ATTRIBUTE,
    KekMaterial,
    PushContent,
    build_heartbeat,
    build_push,
)
from groupvpn.gdoi.push_ack import (
    KEK_ACK_REQUESTED,
    AckKey,
    ack_requested_attribute,
    derive_ack_key,
)
from groupvpn.gdoi.push_sig import RsaPushSigner, sig_hash
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import Address
from groupvpn.ike.sa import IkeSa
from groupvpn.member.core import GroupVpn, MemberCore
from groupvpn.member.install import PolicyFilter, install_all
from groupvpn.member.keyring import KeyStatus
from groupvpn.server.core import KeyServerCore
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.kek import Kek, new_kek
from groupvpn.server.rekeying import is_rekey_ack
from groupvpn.server.signing import SigningKey
from groupvpn.server.tek import Tek, new_tek
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import Doi, ExchangeType
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.gdoi import GdoiId, GdoiSaPayload, KeyDownloadPayload, SaTekPayload
from groupvpn.wire.gdoi_numbers import TekProtocol
from groupvpn.wire.message import pull_header
from groupvpn.wire.payloads import DeletePayload, IdPayload
from tests.ikepair import peer

SERVER_IP = "198.51.100.20"
MEMBER_IP = "198.51.100.11"
PORT = 848
SERVER = (SERVER_IP, PORT)


def kek_attributes(
    *, acks: bool = True, heartbeat: int | None = 10, extra: Iterable[DataAttribute] = ()
) -> tuple[DataAttribute, ...]:
    """SA KEK attributes the server's registrations carry beyond the RFC 3547 ones."""
    found = [ack_requested_attribute()] if acks else []
    if heartbeat is not None:
        found.append(DataAttribute.basic(HEARTBEAT_INTERVAL_ATTRIBUTE, heartbeat))
    return (*found, *extra)


class RekeyKeyServer(GroupKeyServer):
    """Our key server, with the KEK attributes of a group that sends rekeys and heartbeats.

    They are put in here (replacing any the server sends itself) so the member's
    side is tested whatever the server-side work has reached.
    """

    added: tuple[DataAttribute, ...] = kek_attributes()

    def admit(
        self, group_id: int, sa: IkeSa, now: float, local_address: str | None = None
    ) -> GroupOffer | PullError:
        offer = super().admit(group_id, sa, now, local_address)
        if not isinstance(offer, GroupOffer) or offer.sa.kek is None:
            return offer
        kek = replace(offer.sa.kek, attributes=self.with_ours(offer.sa.kek.attributes))
        return replace(offer, sa=replace(offer.sa, kek=kek))

    def with_ours(self, attributes: tuple[DataAttribute, ...]) -> tuple[DataAttribute, ...]:
        """``attributes`` without the server's own ACK/heartbeat attributes, plus ``added``."""
        kept = tuple(a for a in attributes if a.type not in _OURS | {a.type for a in self.added})
        return kept + self.added


_OURS = {KEK_ACK_REQUESTED, HEARTBEAT_INTERVAL_ATTRIBUTE}


@dataclass
class RekeyNet:
    groups: RekeyKeyServer
    server: KeyServerCore
    member: MemberCore
    private_key: rsa.RSAPrivateKey
    dialect: Dialect
    now: float = 0.0
    #: Every event with the time it came out.
    events: list[tuple[float, object]] = field(default_factory=list)
    server_events: list[object] = field(default_factory=list)
    acks: list[tuple[bytes, Address]] = field(default_factory=list)
    #: Datagrams from the member to the server that are not ACKs (phase 1, pulls).
    to_server: int = 0

    # -- time ---------------------------------------------------------------------------

    def run(self, until: float) -> None:
        """Deliver datagrams and fire timers up to ``until``, then stand at ``until``."""
        for _ in range(100_000):
            self._deliver()
            timers = [
                t for t in (self.server.get_timer(), self.member.get_timer()) if t is not None
            ]
            if not timers or min(timers) > until:
                break
            self.now = max(self.now, min(timers))
            self.server.handle_timer(self.now)
            self.member.handle_timer(self.now)
        else:
            raise AssertionError(f"timers keep firing at {self.now}")
        self.now = max(self.now, until)

    def _deliver(self) -> None:
        for _ in range(100):
            moved = False
            for data, addr in self.member.datagrams_to_send():
                moved = True
                if is_rekey_ack(data):
                    self.acks.append((data, addr))
                else:
                    self.to_server += 1
                    self.server.receive_datagram(data, (MEMBER_IP, PORT), self.now)
            for data, _ in self.server.datagrams_to_send():
                moved = True
                # The member gets only the pushes the tests build and deliver themselves.
                if pull_header(data).exchange_type != ExchangeType.GROUPKEY_PUSH:
                    self.member.receive_datagram(data, SERVER, self.now)
            self._collect()
            if not moved:
                return

    def _collect(self) -> None:
        while (event := self.member.next_event()) is not None:
            self.events.append((self.now, event))
        while (server_event := self.server.next_event()) is not None:
            self.server_events.append(server_event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for _, event in self.events if isinstance(event, kind)]

    def at(self, kind: type[Any]) -> list[tuple[float, Any]]:
        return [(t, event) for t, event in self.events if isinstance(event, kind)]

    # -- the key server's side ----------------------------------------------------------

    def kek(self) -> Kek:
        kek = self.groups.current_kek(1, self.now)
        assert kek is not None
        return kek

    def definition(self) -> GroupDefinition:
        [definition] = self.groups.definitions()
        return definition

    def new_teks(self, names: Iterable[str] | None = None) -> list[Tek]:
        """Fresh keys for the group's policies (all, or those named)."""
        policies = self.definition().policies
        wanted = None if names is None else set(names)
        return [
            new_tek(policy, self.now, set())
            for policy in policies
            if wanted is None or policy.name in wanted
        ]

    def sat(self, tek: Tek) -> SaTekPayload:
        return SaTekPayload(
            TekProtocol.IPSEC_ESP,
            tek.sa_tek(self.now, address_preservation=self.dialect.has_gap),
            self.dialect.sat_id_length_octets,
        )

    def rekey_content(
        self,
        sequence: int,
        teks: list[Tek],
        *,
        deletes: Iterable[bytes] = (),
        group_clock: int | None = None,
        new_kek: Kek | None = None,
    ) -> PushContent:
        sa_kek = None
        packets = [tek.key_packet() for tek in teks]
        if new_kek is not None:
            source, destination = GdoiId.ipv4(SERVER_IP, PORT), GdoiId.ipv4(MEMBER_IP, PORT)
            bits = self.private_key.key_size
            sa_kek = new_kek.sa_kek(self.now, source, destination, bits)
            sa_kek = replace(sa_kek, attributes=self.groups.with_ours(sa_kek.attributes))
            public = SigningKey(self.private_key).public_der
            packets.insert(0, new_kek.key_packet(public))
        sats = tuple(self.sat(tek) for tek in teks)
        sa = GdoiSaPayload(Doi.GDOI, 0, kek=sa_kek, teks=sats) if sats or sa_kek else None
        delete = tuple(DeletePayload(Doi.GDOI, TekProtocol.IPSEC_ESP, 4, (spi,)) for spi in deletes)
        kd = KeyDownloadPayload(tuple(packets)) if packets else None
        return PushContent(sequence, sa=sa, key_download=kd, deletes=delete,
                           group_clock=group_clock)  # fmt: skip

    def push(
        self,
        content: PushContent,
        *,
        kek: Kek | None = None,
        signer: rsa.RSAPrivateKey | None = None,
    ) -> bytes:
        """A push as the key server would build it, under ``kek`` (the group's by default)."""
        kek = kek or self.kek()
        material = KekMaterial.named(kek.spi, kek.policy.cipher.name, kek.key, kek.iv)
        return build_push(
            content, material, RsaPushSigner(signer or self.private_key),
            sig_hash(kek.policy.sig_hash.algorithm), dialect=self.dialect,
        )  # fmt: skip

    def rekey(self, sequence: int, teks: list[Tek], **options: Any) -> bytes:
        return self.push(self.rekey_content(sequence, teks, **options))

    def heartbeat(self, sequence: int, teks: list[Tek] | None = None, clock: int = 0) -> bytes:
        """A heartbeat listing ``teks`` (the server's current keys by default)."""
        kek = self.kek()
        listed = self.groups.current_teks(1, self.now) if teks is None else teks
        material = KekMaterial.named(kek.spi, kek.policy.cipher.name, kek.key, kek.iv)
        return build_heartbeat(
            sequence, [self.sat(tek) for tek in listed], clock, material,
            RsaPushSigner(self.private_key), sig_hash(kek.policy.sig_hash.algorithm),
            dialect=self.dialect,
        )  # fmt: skip

    def deliver(self, data: bytes, *, multicast: bool = False, source: Address = SERVER) -> None:
        """A push arriving now (then whatever it set in motion)."""
        if multicast:
            self.member.receive_multicast(data, source, self.now)
        else:
            self.member.receive_datagram(data, source, self.now)
        self._deliver()

    def ack_key(self) -> AckKey:
        """The ACK key as the key server derives it from its side of the member's IKE SA."""
        sa = self.member.ike.established_with("gw1")
        assert sa is not None
        theirs = self.server.ike.find_sa(sa.initiator_cookie, sa.responder_cookie)
        assert theirs is not None and theirs.keys is not None
        spec = sig_hash(self.kek().policy.sig_hash.algorithm)
        return derive_ack_key(spec, theirs.keys.skeyid_a, sa.initiator_cookie + sa.responder_cookie)

    # -- the member's side ----------------------------------------------------------------

    def held(self) -> list[KeyStatus]:
        return self.member.key_status(self.now)

    def by_spi(self) -> dict[bytes, KeyStatus]:
        return {key.spi: key for key in self.held()}


def rekey_net(
    group: GroupDefinition,
    dialect: Dialect,
    private_key: rsa.RSAPrivateKey,
    *,
    threshold: int = 3,
    policy_filter: PolicyFilter = install_all,
    added: tuple[DataAttribute, ...] | None = None,
    register: bool = True,
    tamper: Callable[[RekeyKeyServer], None] | None = None,
    reregistration_spread: float = 0.0,
    jitter_seed: int = 7,
) -> RekeyNet:
    """The member registered (at a time shortly after 0) unless ``register`` is False."""
    groups = RekeyKeyServer([group], dialect, signing_key=SigningKey(private_key))
    if added is not None:
        groups.added = added
    if tamper is not None:
        tamper(groups)
    server_ike = IkeEndpoint(SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=b"psk")])
    member_ike = IkeEndpoint(MEMBER_IP, [peer(SERVER_IP, gateway="gw1", psk=b"psk")])
    member = MemberCore(
        member_ike, [GroupVpn("vpn1", "gw1", group.group_id, heartbeat_threshold=threshold)],
        dialect, jitter=random.Random(jitter_seed), policy_filter=policy_filter,
        reregistration_spread=reregistration_spread,
    )  # fmt: skip
    net = RekeyNet(groups, KeyServerCore(server_ike, groups), member, private_key, dialect)
    member.handle_timer(0.0)
    if register:
        net.run(until=1.0)
    return net


def an_identity() -> IdPayload:
    return IdPayload.ipv4(MEMBER_IP)


def fresh_kek(net: RekeyNet) -> Kek:
    """Another KEK under the group's policy, as a rollover would bring."""
    return new_kek(net.kek().policy, net.now, {net.kek().spi})
