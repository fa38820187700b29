"""The member's SA database: dynamic policies in lookup order, and every key by SPI.

The data-plane engine (:mod:`.engine`) asks two questions per packet: which dynamic
policy does an outbound packet match first, and which key does an inbound SPI name.
This module answers them with tables rebuilt whenever a group VPN's keys change, so
the packet path only scans a tuple and looks up a dict:

* :attr:`SaDatabase.outbound`: one :data:`PolicyRow` per dynamic policy, over all
  group VPNs (in the order the VPNs were first installed, each VPN's policies in its
  own order): the selectors as integers, then the encrypting key's
  ``(encapsulate, group_time, max_inner)`` or None when the policy has no key now;
* :attr:`SaDatabase.inbound`: SPI (as a 32-bit integer, the way the engine reads it
  off the packet) -> the :data:`InboundKey` s that decrypt it (almost always one;
  SPIs are unique only within one key server's group, so two VPNs may bring the same
  SPI with different keys).

One :class:`~.esp.EspSa` per key.  A key is its SPI, suite and key material; it keeps
its EspSa across installs, whichever VPN and policy name it, so its ESP sequence
number, CBC IV counter and, above all, its AES-GCM IV counter never start again: a
restarted GCM counter would reuse nonces.  A key that leaves the database leaves its
counters behind (by a digest, not the key), and a key that comes back continues them.
An AES-GCM key encrypts with the sender ID its :class:`GroupSa` carries (the member's
SID from the key server, docs/dataplane.md §4); a new SID for a known key (the member
registered again) gets a new EspSa that continues the counters, as a new window does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network

from groupvpn.dataplane.antireplay import TIME_HEADER_LENGTH, TimeWindow
from groupvpn.dataplane.drops import DropCounters
from groupvpn.dataplane.esp import (
    ESP_HEADER_LENGTH,
    IPV4_HEADER_LENGTH,
    Decapsulate,
    Encapsulate,
    EspSa,
)
from groupvpn.dataplane.suites import ESP_SUITES, EspSuite, esp_suite
from groupvpn.member.keyring import PolicySelectors
from groupvpn.member.keys import GroupSa

GroupTime = Callable[[float], float | None]
#: (address mask, address net, protocol, source port, destination port).  The
#: addresses are one 64-bit integer, source then destination, as the header holds
#: them (octets 12-19): a packet matches when ``addresses & mask == net``.  0 is "any"
#: for protocol and ports.
Match = tuple[int, int, int, int, int]
#: A policy's encrypting key: (EspSa.encapsulate, the VPN's group clock, the largest
#: inner packet that fits the path MTU once encapsulated).
Sender = tuple[Encapsulate, GroupTime, int]
PolicyRow = tuple[int, int, int, int, int, Sender | None]
#: A decrypting key: (EspSa.decapsulate, the VPN's group clock, the SA's own selectors).
InboundKey = tuple[Decapsulate, GroupTime, Match]

#: ESP trailer: pad length and next header.
TRAILER_LENGTH = 2
#: How many removed keys' counters are remembered (a key normally lives hours; a
#: member holds two per policy, so this is many rekeys of many policies).
RETIRED_KEYS = 4096


def suite_of(sa: GroupSa) -> EspSuite:
    """The ESP suite of a group SA; ValueError if the data plane has none for it.

    AES-GCM has no separate integrity algorithm (the SA names none).
    """
    return esp_suite(sa.cipher.name, None if sa.integrity is None else sa.integrity.name)


def overhead_of(suite: EspSuite, window: TimeWindow) -> int:
    """Worst-case octets ESP adds to an inner packet: outer header to ICV, most padding."""
    return (
        IPV4_HEADER_LENGTH + ESP_HEADER_LENGTH + suite.iv_length + suite.icv_length
        + TRAILER_LENGTH + suite.alignment - 1 + (TIME_HEADER_LENGTH if window.enabled else 0)
    )  # fmt: skip


def max_inner_length(suite: EspSuite, window: TimeWindow, mtu: int) -> int:
    """The largest inner packet whose ESP packet fits ``mtu`` (exact, not worst case)."""
    room = mtu - IPV4_HEADER_LENGTH - ESP_HEADER_LENGTH - suite.iv_length - suite.icv_length
    padded = room - room % suite.alignment
    return padded - TRAILER_LENGTH - (TIME_HEADER_LENGTH if window.enabled else 0)


def match_of(
    source: IPv4Network, destination: IPv4Network, source_port: int, destination_port: int,
    protocol: int,
) -> Match:  # fmt: skip
    mask = int(source.netmask) << 32 | int(destination.netmask)
    net = int(source.network_address) << 32 | int(destination.network_address)
    return mask, net, protocol, source_port, destination_port


def policy_match(selectors: PolicySelectors) -> Match:
    return match_of(
        selectors.source, selectors.destination, selectors.source_port,
        selectors.destination_port, selectors.protocol,
    )  # fmt: skip


def sa_match(sa: GroupSa) -> Match:
    return match_of(sa.source, sa.destination, sa.source_port, sa.destination_port, sa.protocol)


def key_digest(suite: EspSuite, sa: GroupSa) -> bytes:
    """What makes two group SAs the same key: SPI, suite and key material (hashed)."""
    digest = hashlib.sha256(suite.name.encode())
    for part in (sa.spi, sa.encryption_key, sa.integrity_key):
        digest.update(len(part).to_bytes(2, "big") + part)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class VpnKeys:
    """What ``install`` was told for one group VPN."""

    group_id: int
    order: tuple[PolicySelectors, ...]
    encrypting: dict[PolicySelectors, GroupSa]
    decrypting: tuple[GroupSa, ...]
    group_time: GroupTime


@dataclass(frozen=True, slots=True)
class InstalledSa:
    """One key in the database, for views and tests."""

    vpn: str
    group_id: int
    spi: bytes
    suite: str
    encrypting: bool
    esp: EspSa


class SaDatabase:
    """Dynamic policies and keys of every group VPN of one member."""

    def __init__(self, mtu: int, drops: DropCounters) -> None:
        self._mtu = mtu
        self._drops = drops
        self._vpns: dict[str, VpnKeys] = {}
        self._live: dict[bytes, EspSa] = {}
        #: digest of a removed key -> (next sequence number, next GCM IV counter)
        self._retired: dict[bytes, tuple[int, int]] = {}
        self.outbound: tuple[PolicyRow, ...] = ()
        self.inbound: dict[int, tuple[InboundKey, ...]] = {}
        self.needs_ports = False
        self._installed: list[InstalledSa] = []

    # -- changes -----------------------------------------------------------------------

    def install(
        self,
        vpn: str,
        group_id: int,
        order: Sequence[PolicySelectors],
        encrypting: Mapping[PolicySelectors, GroupSa],
        decrypting: Iterable[GroupSa],
        group_time: GroupTime,
    ) -> None:
        """Replace what ``vpn`` has; ValueError (and nothing changed) for an unusable key.

        An encrypting key must belong to its policy (its own selectors are the
        policy's); a key for a policy not in ``order`` encrypts nothing.  Every
        encrypting key also decrypts.
        """
        for selectors, sa in encrypting.items():
            if PolicySelectors.of(sa) != selectors:
                raise ValueError(
                    f"key {sa.spi.hex()} is for policy {PolicySelectors.of(sa)}, not {selectors}"
                )
        decrypt = {sa.spi: sa for sa in decrypting}
        decrypt.update((sa.spi, sa) for sa in encrypting.values())
        keys = VpnKeys(
            group_id, tuple(dict.fromkeys(order)), dict(encrypting),
            tuple(decrypt.values()), group_time,
        )  # fmt: skip
        vpns = dict(self._vpns)
        vpns[vpn] = keys
        # The VPN installed now comes first, so its window wins for a key it shares.
        self._rebuild(vpns, first=vpn)

    def remove(self, vpn: str) -> None:
        if vpn in self._vpns:
            vpns = dict(self._vpns)
            del vpns[vpn]
            self._rebuild(vpns, first=None)

    def _rebuild(self, vpns: dict[str, VpnKeys], first: str | None) -> None:
        """Build every table for ``vpns``, then swap them in (all or nothing)."""
        names = sorted(vpns, key=lambda name: name != first)  # stable: ``first`` in front
        wanted: dict[bytes, tuple[EspSuite, GroupSa, TimeWindow]] = {}
        digests: dict[int, bytes] = {}  # id(GroupSa) -> its key's digest
        for name in names:
            for sa in vpns[name].decrypting:
                suite = suite_of(sa)
                digest = key_digest(suite, sa)
                digests[id(sa)] = digest
                wanted.setdefault(digest, (suite, sa, TimeWindow.seconds(sa.anti_replay_window)))
        live: dict[bytes, EspSa] = {}
        continued: list[bytes] = []
        for digest, (suite, sa, window) in wanted.items():
            old = self._live.get(digest)
            sender_id = sa.sender_id if suite.is_aead else None
            if old is not None and old.window == window and old.sender_id == sender_id:
                live[digest] = old
                continue
            # A new key, a key coming back, or a known key with a new window or sender
            # ID: a new EspSa, continuing the counters of the old one where there was one
            # (a counter may go on under a new SID, which no other member has either).
            if old is not None:
                sequence, nonce = old.sequence, old.nonce_counter
            else:
                sequence, nonce = self._retired.get(digest, (1, 0))
                continued.append(digest)
            live[digest] = EspSa(
                suite, sa.spi, sa.encryption_key, b"" if suite.is_aead else sa.integrity_key,
                window=window, sender_id=sender_id, counters=self._drops,
                sequence=sequence, nonce_counter=nonce,
            )  # fmt: skip
        # Nothing can fail from here on.
        outbound: list[PolicyRow] = []
        inbound: dict[int, list[InboundKey]] = {}
        installed: list[InstalledSa] = []
        for name, keys in vpns.items():  # the order VPNs were first installed
            for selectors in keys.order:
                encrypting = keys.encrypting.get(selectors)
                sender: Sender | None = None
                if encrypting is not None:
                    esp = live[digests[id(encrypting)]]
                    sender = (
                        esp.encapsulate, keys.group_time,
                        max_inner_length(esp.suite, esp.window, self._mtu),
                    )  # fmt: skip
                outbound.append((*policy_match(selectors), sender))
            encrypting_spis = {sa.spi for sa in keys.encrypting.values()}
            for sa in keys.decrypting:
                esp = live[digests[id(sa)]]
                inbound.setdefault(int.from_bytes(sa.spi, "big"), []).append(
                    (esp.decapsulate, keys.group_time, sa_match(sa))
                )
                encrypts = sa.spi in encrypting_spis
                installed.append(
                    InstalledSa(name, keys.group_id, sa.spi, esp.suite.name, encrypts, esp)
                )
        for digest, esp in self._live.items():
            if digest not in live:
                self._retired.pop(digest, None)
                self._retired[digest] = (esp.sequence, esp.nonce_counter)
        for digest in continued:
            self._retired.pop(digest, None)
        while len(self._retired) > RETIRED_KEYS:
            del self._retired[next(iter(self._retired))]
        self._vpns = vpns
        self._live = live
        self.outbound = tuple(outbound)
        self.inbound = {spi: tuple(keys) for spi, keys in inbound.items()}
        self.needs_ports = any(row[3] or row[4] for row in outbound)
        self._installed = installed

    # -- questions ---------------------------------------------------------------------

    def vpns(self) -> tuple[str, ...]:
        return tuple(self._vpns)

    def installed(self) -> list[InstalledSa]:
        return list(self._installed)

    def destinations(self) -> list[IPv4Network]:
        """Destination prefixes of every dynamic policy, each once, in lookup order."""
        found = (selectors.destination for keys in self._vpns.values() for selectors in keys.order)
        return list(dict.fromkeys(found))

    def overhead(self) -> int:
        """Worst-case ESP overhead over the installed keys (all suites when there are none)."""
        if self._live:
            return max(overhead_of(esp.suite, esp.window) for esp in self._live.values())
        anti_replay = TimeWindow.seconds(1)
        return max(overhead_of(suite, anti_replay) for suite in ESP_SUITES.values())
