"""The member's data plane without I/O: packets from the TUN and the WAN in, packets out.

A :class:`DataPlane` is driven by the member daemon's Linux shell, which owns the TUN
device, the raw sockets and the routes (docs/dataplane.md, "Engine"):

* :meth:`DataPlane.outbound` takes a packet read from the TUN (one the kernel routed
  there because its destination is a dynamic policy's) and returns what to send:
  the ESP packet under the first matching dynamic policy's key, the packet itself
  when no policy matches (clear traffic keeps its normal path), fragments, or an
  ICMP error for the local sender;
* :meth:`DataPlane.inbound` takes an ESP packet from the raw ``IPPROTO_ESP`` socket
  and returns the inner packet for the TUN, if its SPI names a key, it decrypts, it
  is within the anti-replay window and it lies inside the key's own selectors.

Nothing here raises on what arrives: every packet not delivered is counted under a
reason in :attr:`DataPlane.counters`.  Keys come from the member's keyring through
:meth:`DataPlane.install_keys`, one group VPN at a time.

The per-packet methods are flat on purpose: one ``struct`` unpack for the header, a
linear scan of a tuple of tuples for the policy, a dict lookup for the SPI, and the
ESP codec, which is handed what the engine read of the header so it does not read it
again (and writes the forwarded TTL into the one copy of the packet it makes); slow
cases (fragments, ICMP, odd packets) are in separate methods.  docs/dataplane.md,
"Performance", has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from groupvpn.dataplane.drops import DropCounters, Dropped, DropReason, Refusal, Refused
from groupvpn.dataplane.esp import ARRIVED, IPPROTO_ESP, SPI_LENGTH, EspSa, esp_spi
from groupvpn.dataplane.ipv4 import (
    DF,
    FIELDS,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HEADER_LENGTH,
    OFFSET_MASK,
    PORTS,
    SELECTED,
    decrement_ttl,
    fragment,
    fragmentation_needed,
    may_send_icmp_error,
    ports,
    time_exceeded,
)
from groupvpn.dataplane.replay import RecentPackets
from groupvpn.dataplane.sadb import InboundKey, InstalledSa, Match, SaDatabase, Sender
from groupvpn.member.keyring import PolicySelectors
from groupvpn.member.keys import GroupSa

__all__ = ["DataPlane", "DataPlaneCounters", "Output", "ToTun", "ToWan"]

#: The smallest MTU every IPv4 link has (RFC 791): below it nothing works.
MIN_MTU = 68
MAX_MTU = 0xFFFF

_UNPACK_FIELDS = FIELDS.unpack_from
_UNPACK_SELECTED = SELECTED.unpack_from
_UNPACK_PORTS = PORTS.unpack_from
_UNPACK_ARRIVED = ARRIVED.unpack_from
#: The protocols whose ports selectors match (ipv4.ports).
_PORTED = frozenset({IPPROTO_TCP, IPPROTO_UDP})


# The results are plain slotted records, not frozen ones: a frozen dataclass sets its
# field through object.__setattr__, which costs about twice as much per packet.
@dataclass(slots=True)
class ToWan:
    """A complete IPv4 packet for the raw ``IPPROTO_RAW`` socket (SO_MARK: routed to the WAN)."""

    packet: bytes


@dataclass(slots=True)
class ToTun:
    """A complete IPv4 packet to write into the TUN: a decrypted packet or an ICMP error."""

    packet: bytes


Output = ToWan | ToTun


class DataPlaneCounters:
    """Traffic and drops of one member's data plane; plain integers, cheap to bump.

    ``packets_out``/``bytes_out``: inner packets encrypted and sent to the WAN and
    their octets before ESP (each fragment counts); ``packets_in``/``bytes_in``:
    inner packets decrypted and written to the TUN; ``clear_packets``/``clear_bytes``:
    packets from the TUN that matched no dynamic policy and went out unchanged;
    ``fragments``: fragments made of inner packets too big for the path;
    ``icmp_errors``: ICMP errors sent back to local senders.  ``drops`` counts every
    packet not delivered by reason: inbound in ``drops.dropped``, outbound in
    ``drops.refused`` (docs/dataplane.md §6 and "Engine").
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "clear_bytes",
        "clear_packets",
        "drops",
        "fragments",
        "icmp_errors",
        "packets_in",
        "packets_out",
    )

    def __init__(self, drops: DropCounters | None = None) -> None:
        self.drops = drops if drops is not None else DropCounters()
        self.packets_out = self.bytes_out = 0
        self.packets_in = self.bytes_in = 0
        self.clear_packets = self.clear_bytes = 0
        self.fragments = self.icmp_errors = 0

    def __repr__(self) -> str:
        return (
            f"DataPlaneCounters(out={self.packets_out}, in={self.packets_in}, "
            f"clear={self.clear_packets}, dropped={self.drops.total_dropped}, "
            f"refused={self.drops.total_refused})"
        )

    def reset(self) -> None:
        """Every count back to zero (`clear security group-vpn member ipsec statistics`)."""
        self.drops.reset()
        self.packets_out = self.bytes_out = 0
        self.packets_in = self.bytes_in = 0
        self.clear_packets = self.clear_bytes = 0
        self.fragments = self.icmp_errors = 0

    def as_dict(self) -> dict[str, object]:
        """For views and JSON: the counts, then the drops by reason."""
        return {
            "packets-out": self.packets_out,
            "bytes-out": self.bytes_out,
            "packets-in": self.packets_in,
            "bytes-in": self.bytes_in,
            "clear-packets": self.clear_packets,
            "clear-bytes": self.clear_bytes,
            "fragments": self.fragments,
            "icmp-errors": self.icmp_errors,
            **self.drops.as_dict(),
        }


class DataPlane:
    """ESP for every group VPN of one member, sans I/O (module docstring).

    ``local_address`` is the member's WAN address: the source of the ICMP errors it
    sends.  (AES-GCM IVs carry the sender ID each key's GroupSa brings, not the
    address: docs/dataplane.md §4.)  ``mtu`` is
    the WAN path MTU that ESP packets must fit.  ``decrement_ttl``: the inner TTL is
    decremented as a router does, and a packet arriving with TTL 0 or 1 is answered
    with ICMP time exceeded (docs/dataplane.md, "Engine", on why a shell may turn it
    off).
    """

    def __init__(
        self,
        local_address: IPv4Address,
        *,
        mtu: int = 1500,
        counters: DataPlaneCounters | None = None,
        decrement_ttl: bool = True,
    ) -> None:
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise ValueError(f"an IPv4 MTU is {MIN_MTU} to {MAX_MTU}, not {mtu}")
        self.local_address = local_address
        self.mtu = mtu
        self.counters = counters if counters is not None else DataPlaneCounters()
        self._replayed = RecentPackets().replayed
        self._decrement_ttl = decrement_ttl
        self._icmp_source = local_address.packed
        self._sadb = SaDatabase(mtu, self.counters.drops)
        self._policies = self._sadb.outbound
        self._by_spi = self._sadb.inbound
        self._needs_ports = False

    # -- keys ----------------------------------------------------------------------------

    def install_keys(
        self,
        vpn: str,
        group_id: int,
        order: Sequence[PolicySelectors],
        encrypting: Mapping[PolicySelectors, GroupSa],
        decrypting: Iterable[GroupSa],
        group_time: Callable[[float], float | None],
    ) -> None:
        """Replace everything known for ``vpn``.

        ``order``: its dynamic policies in lookup order; ``encrypting``: the key each
        encrypts with now (a policy without one drops its traffic: ``no-key``);
        ``decrypting``: every key that decrypts (active, pending, retiring; the
        encrypting keys decrypt too); ``group_time(now)``: the group clock.  A key
        already installed keeps its EspSa and so its counters (sadb module).
        ValueError, with nothing changed, for a key the data plane cannot use.
        """
        self._sadb.install(vpn, group_id, order, encrypting, decrypting, group_time)
        self._refresh()

    def remove_vpn(self, vpn: str) -> None:
        """Forget ``vpn``'s policies and keys (its traffic then matches no policy)."""
        self._sadb.remove(vpn)
        self._refresh()

    def _refresh(self) -> None:
        self._policies = self._sadb.outbound
        self._by_spi = self._sadb.inbound
        self._needs_ports = self._sadb.needs_ports

    def protected_destinations(self) -> list[IPv4Network]:
        """Destination prefixes of every dynamic policy: what the shell routes into the TUN."""
        return self._sadb.destinations()

    def overhead(self) -> int:
        """Worst-case ESP overhead of the installed keys: TUN MTU = WAN MTU - this."""
        return self._sadb.overhead()

    def installed(self) -> list[InstalledSa]:
        """Every installed key with its EspSa (sequence, GCM counter), for views."""
        return self._sadb.installed()

    def esp_sa(self, spi: bytes) -> EspSa | None:
        """The EspSa of an installed key, by SPI (the first VPN's if two share it)."""
        for sa in self._sadb.installed():
            if sa.spi == spi:
                return sa.esp
        return None

    # -- outbound ------------------------------------------------------------------------

    def outbound(self, packet: bytes, now: float) -> list[Output]:
        """What to send for a packet read from the TUN at local time ``now``."""
        length = len(packet)
        if length < IPV4_HEADER_LENGTH:
            return self._refuse(Refusal.BAD_INNER_HEADER)
        fields = _UNPACK_FIELDS(packet)  # handed on to the SA, which needs them too
        first, _, total, field, ttl, protocol, _, addresses = fields
        header_length = (first & 0x0F) << 2
        if (
            first >> 4 != 4
            or total != length
            or header_length < IPV4_HEADER_LENGTH
            or header_length > length
        ):
            return self._refuse(Refusal.BAD_INNER_HEADER)
        # Ports: -1 the protocol has none (only "any" matches), -2 unreadable (any matches).
        source_port = destination_port = -1
        if self._needs_ports and protocol in _PORTED:
            if field & OFFSET_MASK or length < header_length + 4:
                source_port = destination_port = -2
            else:
                source_port, destination_port = _UNPACK_PORTS(packet, header_length)
        for mask, net, proto, sport, dport, sender in self._policies:  # noqa: B007
            if (
                (addresses & mask) == net
                and (not proto or proto == protocol)
                and (not sport or sport == source_port or source_port == -2)
                and (not dport or dport == destination_port or destination_port == -2)
            ):
                break
        else:
            counters = self.counters
            counters.clear_packets += 1
            counters.clear_bytes += length
            return [ToWan(packet)]
        if sender is None:
            return self._refuse(Refusal.NO_KEY)
        encapsulate, group_time, max_inner = sender
        if length > max_inner or ttl <= 1:
            return self._slow_outbound(packet, ttl, field, sender, now)
        # With decrement_ttl the SA writes TTL - 1 (RFC 1141 checksum) into the copy of
        # the inner packet it encrypts anyway, so forwarding costs no copy of its own.
        esp = encapsulate(packet, group_time(now), fields, self._decrement_ttl)
        if isinstance(esp, Refused):
            return []  # counted by the SA
        counters = self.counters
        counters.packets_out += 1
        counters.bytes_out += length
        return [ToWan(esp)]

    def _slow_outbound(
        self, packet: bytes, ttl: int, field: int, sender: Sender, now: float
    ) -> list[Output]:
        """TTL expiring (with the TTL rule on), or too big for the path once encapsulated."""
        if self._decrement_ttl and ttl <= 1:
            return self._time_exceeded(packet)
        if len(packet) > sender[2]:
            return self._too_big(packet, field, sender, now)
        encapsulate, group_time, _ = sender  # TTL 0 or 1, left to the kernel
        esp = encapsulate(packet, group_time(now))
        if isinstance(esp, Refused):
            return []
        self.counters.packets_out += 1
        self.counters.bytes_out += len(packet)
        return [ToWan(esp)]

    def _refuse(self, reason: Refusal) -> list[Output]:
        self.counters.drops.refuse(reason)
        return []

    def _icmp(self, icmp: bytes) -> list[Output]:
        self.counters.icmp_errors += 1
        return [ToTun(icmp)]

    def _time_exceeded(self, packet: bytes) -> list[Output]:
        self.counters.drops.refuse(Refusal.TTL_EXCEEDED)
        if may_send_icmp_error(packet):
            return self._icmp(time_exceeded(packet, self._icmp_source))
        return []

    def _too_big(self, packet: bytes, field: int, sender: Sender, now: float) -> list[Output]:
        """Too big for the path once encapsulated: ICMP if DF is set, else fragments."""
        encapsulate, group_time, max_inner = sender
        if field & DF:
            # RFC 1191: the next-hop MTU is the largest packet this policy can carry.
            self.counters.drops.refuse(Refusal.FRAGMENTATION_NEEDED)
            if may_send_icmp_error(packet):
                return self._icmp(fragmentation_needed(packet, max_inner, self._icmp_source))
            return []
        if self._decrement_ttl:
            packet = decrement_ttl(packet)
        pieces = fragment(packet, max_inner)
        if pieces is None:
            return self._refuse(Refusal.MTU_TOO_SMALL)
        clock = group_time(now)
        sealed: list[Output] = []
        for piece in pieces:
            esp = encapsulate(piece, clock)
            if isinstance(esp, Refused):
                return []  # the rest would be useless without this piece; counted by the SA
            sealed.append(ToWan(esp))
        counters = self.counters
        counters.fragments += len(pieces)
        counters.packets_out += len(pieces)
        counters.bytes_out += sum(len(piece) for piece in pieces)
        return sealed

    # -- inbound -------------------------------------------------------------------------

    def inbound(self, packet: bytes, now: float) -> list[Output]:
        """The inner packet for the TUN of an ESP packet from the WAN, if it passes."""
        if len(packet) < IPV4_HEADER_LENGTH + SPI_LENGTH or packet[9] != IPPROTO_ESP:
            return self._not_esp(packet)
        if packet[0] == 0x45:
            # A 20-octet header, as every ESP packet Linux sends: the SA's first look at
            # the header reads the SPI too, and the SA is handed what it read.
            arrived = _UNPACK_ARRIVED(packet)
            keys = self._by_spi.get(arrived[4])
        else:
            arrived = None
            spi = esp_spi(packet)
            keys = None if spi is None else self._by_spi.get(int.from_bytes(spi, "big"))
        if keys is None:
            return self._unknown_spi(packet)
        if len(keys) > 1:
            return self._inbound_shared_spi(packet, now, keys)
        decapsulate, group_time, selectors = keys[0]
        inner = decapsulate(packet, group_time(now), arrived)
        if isinstance(inner, Dropped):
            return []  # counted by the SA
        # The SA checked that ``inner`` is one whole IPv4 packet.
        protocol, addresses = _UNPACK_SELECTED(inner)
        mask, net, proto, sport, dport = selectors
        if (
            (addresses & mask) != net
            or (proto and proto != protocol)
            or ((sport or dport) and not _ports_match(inner, protocol, sport, dport))
        ):
            self.counters.drops.drop(DropReason.POLICY_MISMATCH)
            return []
        counters = self.counters
        if self._replayed(packet):
            counters.drops.drop(DropReason.REPLAYED)
            return []
        counters.packets_in += 1
        counters.bytes_in += len(inner)
        return [ToTun(inner)]

    def _not_esp(self, packet: bytes) -> list[Output]:
        drops = self.counters.drops
        if len(packet) < IPV4_HEADER_LENGTH:
            drops.drop(DropReason.TRUNCATED)
        elif packet[9] != IPPROTO_ESP:
            drops.drop(DropReason.BAD_OUTER_HEADER)
        else:
            drops.drop(DropReason.TRUNCATED)
        return []

    def _unknown_spi(self, packet: bytes) -> list[Output]:
        drops = self.counters.drops
        if (packet[0] & 0x0F) < 5 or packet[0] >> 4 != 4:
            drops.drop(DropReason.BAD_OUTER_HEADER)
        elif esp_spi(packet) is None:
            drops.drop(DropReason.TRUNCATED)
        else:
            drops.drop(DropReason.BAD_SPI)
        return []

    def _inbound_shared_spi(
        self, packet: bytes, now: float, keys: tuple[InboundKey, ...]
    ) -> list[Output]:
        """Two group VPNs with the same SPI: the first key that opens it and fits it wins.

        Only one drop is counted for the packet: the first key's reason, or
        ``policy-mismatch`` if some key decrypted it but none had selectors for it.
        """
        drops = self.counters.drops
        before = dict(drops.dropped)
        first_reason: DropReason | None = None
        decrypted = False
        for decapsulate, group_time, selectors in keys:
            inner = decapsulate(packet, group_time(now))
            if isinstance(inner, Dropped):
                first_reason = first_reason or inner.reason
                continue
            decrypted = True
            if _inner_matches(inner, selectors):
                drops.dropped.update(before)
                if self._replayed(packet):
                    drops.drop(DropReason.REPLAYED)
                    return []
                self.counters.packets_in += 1
                self.counters.bytes_in += len(inner)
                return [ToTun(inner)]
        drops.dropped.update(before)
        drops.drop(
            DropReason.POLICY_MISMATCH if decrypted or first_reason is None else first_reason
        )
        return []


def _ports_match(packet: bytes, protocol: int, sport: int, dport: int) -> bool:
    field = packet[6] << 8 | packet[7]
    source_port, destination_port = ports(packet, (packet[0] & 0x0F) << 2, protocol, field)
    if source_port == -2:
        return True
    return (not sport or sport == source_port) and (not dport or dport == destination_port)


def _inner_matches(inner: bytes, selectors: Match) -> bool:
    protocol, addresses = _UNPACK_SELECTED(inner)
    mask, net, proto, sport, dport = selectors
    return (
        (addresses & mask) == net
        and (not proto or proto == protocol)
        and (not (sport or dport) or _ports_match(inner, protocol, sport, dport))
    )
