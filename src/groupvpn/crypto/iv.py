"""CBC IV chains of one IKE SA (RFC 2409 App. B, gdoi-wire.md §2.5).

An IKE SA has one IV chain for phase 1 (message ID 0) and one per message ID
of every later exchange (Informational, GROUPKEY-PULL, Quick Mode).  The next
IV of a chain is the last ciphertext block of the previous message in it.

Updates are two-step (the idea strongSwan uses): after decrypting a message
the caller stores its last block as a *candidate* with :meth:`update`, and
only after the message authenticated does :meth:`confirm` make it current.
A forged or corrupted message therefore cannot desynchronise the chain, and a
retransmission of the last good message (byte-identical) decrypts again.
"""

from __future__ import annotations

from collections import OrderedDict

from groupvpn.crypto.hashes import HashAlgorithm
from groupvpn.crypto.keymat import phase2_initial_iv

#: How many message-ID chains one SA keeps.  A peer picks message IDs, so
#: without a bound it could make us store an IV for each of 2^32 of them.
DEFAULT_MAX_CHAINS = 32

PHASE1 = 0  # message ID of the phase 1 chain


class IvManager:
    """The current and candidate IVs of one IKE SA, per message ID."""

    __slots__ = ("_current", "_max_chains", "_pending", "_phase1", "_phase1_pending")

    def __init__(self, max_chains: int = DEFAULT_MAX_CHAINS) -> None:
        if max_chains < 1:
            raise ValueError("max_chains must be at least 1")
        self._max_chains = max_chains
        self._phase1: bytes | None = None
        self._phase1_pending: bytes | None = None
        # Confirmed and candidate IVs live apart so that a flood of messages
        # that never authenticate only churns ``_pending`` and cannot evict a
        # chain of a genuine exchange.  Both are ordered oldest first.
        self._current: OrderedDict[int, bytes] = OrderedDict()
        self._pending: OrderedDict[int, bytes] = OrderedDict()

    def __repr__(self) -> str:
        return f"IvManager(chains={len(self._current)}, pending={len(self._pending)})"

    # -- phase 1 -----------------------------------------------------------------

    def phase1_iv(self) -> bytes:
        """The IV for the next phase 1 message."""
        if self._phase1 is None:
            raise LookupError("phase 1 IV is not set (no keys yet)")
        return self._phase1

    def set_phase1_iv(self, iv: bytes) -> None:
        """Start the phase 1 chain, with hash(g^xi | g^xr) truncated to the block size."""
        self._phase1 = iv
        self._phase1_pending = None

    # -- per message ID ----------------------------------------------------------

    def iv_for(self, message_id: int, hash_alg: HashAlgorithm, block_size: int) -> bytes:
        """The IV for the next message of ``message_id`` (0: the phase 1 chain).

        A message ID seen for the first time starts from hash(last confirmed
        phase 1 block | M-ID).  Nothing is stored here: an unauthenticated
        first message of a new exchange must not take a slot.
        """
        if message_id == PHASE1:
            return self.phase1_iv()
        current = self._current.get(message_id)
        if current is not None:
            return current
        return phase2_initial_iv(hash_alg, self.phase1_iv(), message_id, block_size)

    def update(self, message_id: int, last_cipher_block: bytes) -> None:
        """Remember the last ciphertext block of a message as the chain's next IV, unconfirmed."""
        if message_id == PHASE1:
            # Kept outside the bounded table: per-M-ID churn must never evict it.
            self._phase1_pending = last_cipher_block
            return
        self._pending[message_id] = last_cipher_block
        self._pending.move_to_end(message_id)
        self._trim(self._pending)

    def confirm(self, message_id: int) -> None:
        """The message passed its checks: its candidate becomes the chain's current IV.

        Without a candidate (already confirmed, or dropped) this does nothing,
        so the chain never moves to a value that was not stored by ``update``.
        """
        if message_id == PHASE1:
            if self._phase1_pending is not None:
                self._phase1, self._phase1_pending = self._phase1_pending, None
            return
        candidate = self._pending.pop(message_id, None)
        if candidate is None:
            return
        self._current[message_id] = candidate
        self._current.move_to_end(message_id)
        self._trim(self._current)

    def forget(self, message_id: int) -> None:
        """Drop a finished exchange's chain (its message ID must not be reused)."""
        if message_id == PHASE1:
            raise ValueError("the phase 1 chain cannot be forgotten")
        self._current.pop(message_id, None)
        self._pending.pop(message_id, None)

    @property
    def chain_count(self) -> int:
        """Confirmed per-message-ID chains currently kept (phase 1 not counted)."""
        return len(self._current)

    def _trim(self, table: OrderedDict[int, bytes]) -> None:
        while len(table) > self._max_chains:
            table.popitem(last=False)
