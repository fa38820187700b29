"""Two in-memory IKE endpoints on a fake clock (the aioquic test idea, written for us)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from groupvpn.crypto.ciphers import CIPHERS
from groupvpn.crypto.dh import MODP_GROUPS
from groupvpn.crypto.hashes import HASHES
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import IkeEvent
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal
from groupvpn.wire.constants import Doi
from groupvpn.wire.payloads import IdPayload

INITIATOR_IP = "198.51.100.1"
RESPONDER_IP = "198.51.100.2"
PORT = 848
PSK = b"gdoi-test-psk"


def proposal(
    encryption: str = "3des-cbc", hash_name: str = "sha1", group: int = 2, lifetime: int = 28800
) -> Phase1Proposal:
    return Phase1Proposal(CIPHERS[encryption], HASHES[hash_name], MODP_GROUPS[group], lifetime)


def peer(
    remote_ip: str,
    *,
    gateway: str = "gw",
    mode: str = "main",
    proposals: tuple[Phase1Proposal, ...] = (),
    psk: bytes = PSK,
    local_identity: IdPayload | None = None,
    remote_identity: IdPayload | None = None,
) -> Phase1Peer:
    return Phase1Peer(
        gateway=gateway,
        addresses=(IPv4Address(remote_ip),),
        mode=mode,
        proposals=proposals or (proposal(),),
        pre_shared_key=psk,
        local_identity=local_identity,
        remote_identity=remote_identity,
        doi=Doi.GDOI,
    )


@dataclass
class Pair:
    """Initiator and responder joined by a lossless (or filtered) in-memory link."""

    initiator: IkeEndpoint
    responder: IkeEndpoint
    now: float = 0.0
    events_i: list[IkeEvent] = field(default_factory=list)
    events_r: list[IkeEvent] = field(default_factory=list)
    #: Every datagram that crossed, in order: (sender name, octets).
    wire: list[tuple[str, bytes]] = field(default_factory=list)

    def collect(self) -> None:
        for endpoint, events in ((self.initiator, self.events_i), (self.responder, self.events_r)):
            while (event := endpoint.next_event()) is not None:
                events.append(event)

    def transfer(self, drop: Callable[[str, int, bytes], bool] | None = None) -> int:
        """Deliver queued datagrams both ways until quiet; ``drop(sender, n, data)`` loses some."""
        moved = 0
        counts = {"i": 0, "r": 0}
        for _ in range(50):
            out_i = self.initiator.datagrams_to_send()
            out_r = self.responder.datagrams_to_send()
            if not out_i and not out_r:
                break
            for data, _addr in out_i:
                counts["i"] += 1
                self.wire.append(("i", data))
                if drop is None or not drop("i", counts["i"], data):
                    self.responder.receive_datagram(data, (INITIATOR_IP, PORT), self.now)
                    moved += 1
            for data, _addr in out_r:
                counts["r"] += 1
                self.wire.append(("r", data))
                if drop is None or not drop("r", counts["r"], data):
                    self.initiator.receive_datagram(data, (RESPONDER_IP, PORT), self.now)
                    moved += 1
        self.collect()
        return moved

    def advance_to_next_timer(self) -> float | None:
        timers = [t for t in (self.initiator.get_timer(), self.responder.get_timer()) if t]
        if not timers:
            return None
        self.now = min(timers)
        self.initiator.handle_timer(self.now)
        self.responder.handle_timer(self.now)
        return self.now


def make_pair(
    initiator_peer: Phase1Peer | None = None,
    responder_peer: Phase1Peer | None = None,
    **endpoint_options: object,
) -> Pair:
    i_peer = initiator_peer or peer(RESPONDER_IP)
    r_peer = responder_peer or peer(INITIATOR_IP, mode=i_peer.mode)
    initiator = IkeEndpoint(INITIATOR_IP, [i_peer], peer_port=PORT, **endpoint_options)  # type: ignore[arg-type]
    responder = IkeEndpoint(RESPONDER_IP, [r_peer], peer_port=PORT, **endpoint_options)  # type: ignore[arg-type]
    return Pair(initiator, responder)
