"""The key server's state on disk: one SQLite database, WAL, private to root.

Tables (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

* ``groups``: per group its SEQ and sender-ID reservations (``server.snapshot``),
  the TEK SPIs still reserved and the SPIs a push still has to delete;
* ``group_keys``: the current TEK of each policy and the current and previous KEK;
* ``members``: each registration, with where its rekeys go and its ACK key.

Key material and ACK keys are secrets: the database and its ``-wal``/``-shm``
files are created mode 0600 in a 0700 directory (``runtime.state``) and nothing
here logs a value.  Writes are one transaction per call.  A write that changes a
group (new keys, a new SEQ or sender-ID block) is synchronous (``synchronous=FULL``):
it is on disk before the datagrams that depend on it leave, even across a power cut.
A write of members only is ``NORMAL``: it survives ``kill -9`` (the WAL is in the page
cache); after a power cut a member registered in the last moments registers again.

Unreadable, corrupt or foreign data raises :class:`StoreError` with the recovery
path, never a silent fresh start: a key server with new keys would split the group.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path

from groupvpn.server.snapshot import GroupSnapshot, KeySnapshot, MemberSnapshot

STATE_FILE = "server-state.db"
SCHEMA_VERSION = 1
#: The application ID in the SQLite header ("GVPN"): `file` and we can tell our file.
APPLICATION_ID = 0x4756504E

_SCHEMA = """
CREATE TABLE groups (
    group_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sequence_reserved INTEGER NOT NULL,
    sender_ids_reserved INTEGER NOT NULL,
    tek_spis TEXT NOT NULL,
    withdrawn_spis TEXT NOT NULL
);
CREATE TABLE group_keys (
    group_id INTEGER NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
    slot TEXT NOT NULL,
    policy TEXT NOT NULL,
    spi BLOB NOT NULL,
    key BLOB NOT NULL,
    extra BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (group_id, slot)
);
CREATE TABLE members (
    group_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    gateway TEXT NOT NULL,
    registered_at REAL NOT NULL,
    peer_port INTEGER NOT NULL,
    local_address TEXT,
    sender_id INTEGER,
    sender_id_bits INTEGER,
    ack_key BLOB,
    PRIMARY KEY (group_id, address)
);
"""

_KEK_SLOTS = ("kek", "previous-kek")
_TEK_SLOT_PREFIX = "tek:"

RECOVERY = (
    "To recover: stop the key server, move {path} (with any -wal and -shm file next to it) "
    "away, keeping it for analysis, and start again. The key server then starts afresh: "
    "new keys, and every member registers again"
)


class StoreError(Exception):
    """The state database cannot be used; the message says why and what to do."""


class ServerStore:
    """The open state database.  Use :meth:`open`; close with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._synchronous = ""

    @classmethod
    def open(cls, directory: Path) -> ServerStore:
        """Open (or create, mode 0600) the database in ``directory``; check it whole."""
        path = directory / STATE_FILE
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise StoreError(f"cannot open the key server state {path}: {exc}") from exc
        if mode is not None and mode & 0o077:
            raise StoreError(
                f"{path} holds keys and is accessible by other users "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        created = mode is None
        try:
            if created:
                # Created private before SQLite opens it; SQLite gives its -wal and
                # -shm files the database file's mode.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the key server state {path}: {exc}") from exc
        store = cls(connection, path)
        try:
            store._prepare(created)
        except sqlite3.Error as exc:
            connection.close()
            recovery = RECOVERY.format(path=path)
            raise StoreError(
                f"the key server state {path} is unreadable ({exc}). {recovery}"
            ) from exc
        except StoreError:
            connection.close()
            raise
        return store

    def _prepare(self, created: bool) -> None:
        db = self._db
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise sqlite3.DatabaseError("cannot use write-ahead logging")
        if created:
            with _transaction(db):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        application = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        recovery = RECOVERY.format(path=self.path)
        if application != APPLICATION_ID:
            raise StoreError(f"{self.path} is not a groupvpn key server state file. {recovery}")
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has state format {version}; this groupvpn reads format "
                f"{SCHEMA_VERSION}. Run the groupvpn version that wrote it, or: {recovery}"
            )
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreError(f"{self.path} is corrupt ({'; '.join(problems[:3])}). {recovery}")

    def close(self) -> None:
        self._db.close()

    # -- reading -------------------------------------------------------------------------

    def load(self) -> tuple[list[GroupSnapshot], list[MemberSnapshot]]:
        """Everything stored.  Rows that make no sense raise :class:`StoreError`."""
        try:
            return self._load()
        except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
            recovery = RECOVERY.format(path=self.path)
            raise StoreError(f"{self.path} holds unusable state ({exc}). {recovery}") from exc

    def _load(self) -> tuple[list[GroupSnapshot], list[MemberSnapshot]]:
        db = self._db
        keys: dict[int, dict[str, KeySnapshot]] = {}
        for row in db.execute(
            "SELECT group_id, slot, policy, spi, key, extra, created_at, expires_at FROM group_keys"
        ):
            group_id, slot = int(row[0]), str(row[1])
            keys.setdefault(group_id, {})[slot] = KeySnapshot(
                str(row[2]), bytes(row[3]), bytes(row[4]), bytes(row[5]),
                float(row[6]), float(row[7]),
            )  # fmt: skip
        groups = []
        for row in db.execute(
            "SELECT group_id, name, sequence_reserved, sender_ids_reserved, tek_spis, "
            "withdrawn_spis FROM groups ORDER BY group_id"
        ):
            group_id = int(row[0])
            slots = keys.get(group_id, {})
            teks = {
                slot[len(_TEK_SLOT_PREFIX) :]: key
                for slot, key in slots.items()
                if slot.startswith(_TEK_SLOT_PREFIX)
            }
            groups.append(
                GroupSnapshot(
                    group_id=group_id,
                    name=str(row[1]),
                    sequence_reserved=_non_negative(row[2], "sequence_reserved"),
                    sender_ids_reserved=_non_negative(row[3], "sender_ids_reserved"),
                    teks=teks,
                    kek=slots.get("kek"),
                    previous_kek=slots.get("previous-kek"),
                    tek_spis={bytes.fromhex(s): float(t) for s, t in json.loads(row[4])},
                    withdrawn_spis=tuple(bytes.fromhex(s) for s in json.loads(row[5])),
                )
            )
        members = [
            MemberSnapshot(
                group_id=int(row[0]),
                address=str(row[1]),
                gateway=str(row[2]),
                registered_at=float(row[3]),
                peer_port=int(row[4]),
                local_address=None if row[5] is None else str(row[5]),
                sender_id=None if row[6] is None else (int(row[6]), int(row[7])),
                ack_key=None if row[8] is None else bytes(row[8]),
            )
            for row in db.execute(
                "SELECT group_id, address, gateway, registered_at, peer_port, local_address, "
                "sender_id, sender_id_bits, ack_key FROM members ORDER BY rowid"
            )
        ]
        return groups, members

    # -- writing -------------------------------------------------------------------------

    def save(
        self,
        groups: Iterable[GroupSnapshot],
        deleted_groups: Iterable[int],
        members: Iterable[MemberSnapshot],
        deleted_members: Iterable[tuple[int, str]],
    ) -> None:
        """One transaction; synchronous to disk when a group changed.  Raises StoreError."""
        groups, deleted_groups = list(groups), list(deleted_groups)
        try:
            self._set_synchronous("FULL" if groups or deleted_groups else "NORMAL")
            with _transaction(self._db):
                for group_id in deleted_groups:
                    self._db.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
                    self._db.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
                for group in groups:
                    self._write_group(group)
                self._db.executemany(
                    "DELETE FROM members WHERE group_id = ? AND address = ?", deleted_members
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_member_row(member) for member in members],
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the key server state {self.path}: {exc}") from exc

    def _write_group(self, group: GroupSnapshot) -> None:
        db = self._db
        db.execute(
            "INSERT OR REPLACE INTO groups VALUES (?, ?, ?, ?, ?, ?)",
            (
                group.group_id, group.name, group.sequence_reserved, group.sender_ids_reserved,
                json.dumps([[spi.hex(), t] for spi, t in group.tek_spis.items()]),
                json.dumps([spi.hex() for spi in group.withdrawn_spis]),
            ),
        )  # fmt: skip
        db.execute("DELETE FROM group_keys WHERE group_id = ?", (group.group_id,))
        slots: list[tuple[str, KeySnapshot | None]] = [
            (_TEK_SLOT_PREFIX + name, key) for name, key in group.teks.items()
        ]
        slots += [("kek", group.kek), ("previous-kek", group.previous_kek)]
        db.executemany(
            "INSERT INTO group_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (group.group_id, slot, key.policy, key.spi, key.key, key.extra,
                 key.created_at, key.expires_at)
                for slot, key in slots
                if key is not None
            ],
        )  # fmt: skip

    def _set_synchronous(self, mode: str) -> None:
        if mode != self._synchronous:
            self._db.execute(f"PRAGMA synchronous = {mode}")
            self._synchronous = mode


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _member_row(member: MemberSnapshot) -> tuple[object, ...]:
    sender_id = member.sender_id
    return (
        member.group_id, member.address, member.gateway, member.registered_at,
        member.peer_port, member.local_address,
        None if sender_id is None else sender_id[0], None if sender_id is None else sender_id[1],
        member.ack_key,
    )  # fmt: skip


def _non_negative(value: object, name: str) -> int:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is {value!r}")
    return value
