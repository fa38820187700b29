"""What of the key server must survive a restart, as plain values (no I/O here).

The key server (``server.groups``) notes which groups and members changed
(:class:`StateChanges`); the daemon turns them into these snapshots and the
store (``groupvpn.store``) writes them before any datagram that depends on them
leaves.  On start the daemon reads them back and hands them to
:meth:`GroupKeyServer.restore`.  docs/persistence.md says what is kept and why.

Times here are wall-clock seconds (``time.time()``), not the core's clock: the
core's clock is the event loop's monotonic time, which starts again at every
boot, while key lifetimes and the group clock must go on across a restart.

SEQ and sender IDs are *reserved ahead*: the stored number is one no push (or
registration) has used yet.  The key server reserves a block before it hands
out the first number of the block, and the block is on disk before anything
carrying that number is sent; a restart continues after the block.  So a SEQ
is never sent twice, not even after ``kill -9`` or a power cut, at the price
of a gap of up to one block at each restart, which members accept (they only
require each SEQ to be higher than the last).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: SEQs reserved per write.  A heartbeat takes a SEQ too: at the shortest
#: heartbeat interval that is a synchronous write every few minutes at most.
SEQ_RESERVATION = 128
#: Sender IDs reserved per write (one per AES-GCM registration).
SENDER_ID_RESERVATION = 1024


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """A TEK or a KEK: its SPI, its secret parts and its lifetime in wall time."""

    #: ``repr`` of the TEK's GroupPolicySpec or the KEK's KekPolicy: a key is
    #: restored only under the same policy it was made for.
    policy: str
    spi: bytes
    #: TEK: the encryption key (AES-GCM: key and salt).  KEK: the key.
    key: bytes = field(repr=False)
    #: TEK: the integrity key (empty for AES-GCM).  KEK: its IV.
    extra: bytes = field(repr=False)
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    group_id: int
    name: str
    #: No SEQ at or below this was reserved-and-unused; the next SEQ is above it.
    sequence_reserved: int
    #: Sender IDs below this may have been handed out; the next one is at least this.
    sender_ids_reserved: int
    #: The current TEK of each group policy, by policy name.
    teks: dict[str, KeySnapshot]
    kek: KeySnapshot | None
    previous_kek: KeySnapshot | None
    #: TEK SPIs handed out and not yet expired (wall time), so none is reused too early.
    tek_spis: dict[bytes, float]
    #: SPIs of withdrawn policies' TEKs that the next push still has to delete.
    withdrawn_spis: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    group_id: int
    address: str
    gateway: str
    registered_at: float  # wall time
    #: The UDP port and the key server's local address of its registration:
    #: where its unicast rekeys go and from where.
    peer_port: int
    local_address: str | None
    sender_id: tuple[int, int] | None  # (value, bits)
    #: Its ACK key (secret), without which its ACKs could not be verified.
    ack_key: bytes | None = field(default=None, repr=False)


@dataclass
class StateChanges:
    """What changed since the last write: groups (keys, SEQ, SIDs) and members."""

    groups: set[int] = field(default_factory=set)
    members: set[tuple[int, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.groups or self.members)

    def merge(self, other: StateChanges) -> None:
        self.groups |= other.groups
        self.members |= other.members
