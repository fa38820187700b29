"""The key server daemon's side of persistence: restore at start, write before sending.

The key server core stays free of I/O: it notes what changed
(:meth:`GroupKeyServer.take_changes`), and :meth:`StatePersister.flush` writes it
in one transaction.  The shell calls ``flush`` before it sends anything, so no
key, SEQ or sender ID reaches the network before it is stored.  When the write
fails (disk full, I/O error) nothing is sent that round: a SEQ sent but not
reserved on disk could be sent again after a restart.  The changes are kept and
written with the next round; the error is logged once a minute.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from groupvpn.server.group_state import RestoredGroup
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.snapshot import GroupSnapshot, MemberSnapshot, StateChanges
from groupvpn.store.server_store import ServerStore, StoreError

log = logging.getLogger("groupvpn")

#: Seconds between two log lines about failing writes.
WRITE_ERROR_REPORT_INTERVAL = 60.0


class StatePersister:
    def __init__(self, store: ServerStore, key_server: GroupKeyServer) -> None:
        self.store = store
        self._key_server = key_server
        self._pending = StateChanges()
        self._last_error_report = -WRITE_ERROR_REPORT_INTERVAL
        self._failed_writes = 0
        #: What :meth:`open` brought back, one entry per stored group still configured.
        self.restored: list[RestoredGroup] = []

    @classmethod
    def open(cls, directory: Path, key_server: GroupKeyServer, now: float) -> StatePersister:
        """Open the store, restore what it holds, write the result; StoreError if unusable."""
        store = ServerStore.open(directory)
        try:
            groups, members = store.load()
            persister = cls(store, key_server)
            persister.restored = key_server.restore(groups, members, now)
            if not persister.flush():
                raise StoreError(f"cannot write the key server state {store.path}")
        except BaseException:
            store.close()
            raise
        return persister

    def flush(self) -> bool:
        """Write what changed; False (and nothing must be sent) if it could not be."""
        self._pending.merge(self._key_server.take_changes())
        if not self._pending:
            return True
        changes = self._pending
        groups: list[GroupSnapshot] = []
        deleted_groups: list[int] = []
        for group_id in changes.groups:
            snapshot = self._key_server.snapshot_group(group_id)
            if snapshot is None:
                deleted_groups.append(group_id)
            else:
                groups.append(snapshot)
        members: list[MemberSnapshot] = []
        deleted_members: list[tuple[int, str]] = []
        for group_id, address in changes.members:
            member = self._key_server.snapshot_member(group_id, address)
            if member is None:
                deleted_members.append((group_id, address))
            else:
                members.append(member)
        try:
            self.store.save(groups, deleted_groups, members, deleted_members)
        except StoreError as exc:
            self._failed_writes += 1
            now = time.monotonic()
            if now >= self._last_error_report + WRITE_ERROR_REPORT_INTERVAL:
                self._last_error_report = now
                log.error("%s; nothing is sent until it can be written (%d failed writes)",
                          exc, self._failed_writes)  # fmt: skip
            return False
        if self._failed_writes:
            log.info("key server state written again after %d failed writes", self._failed_writes)
            self._failed_writes = 0
        self._pending = StateChanges()
        return True

    def close(self) -> None:
        self.flush()
        self.store.close()
