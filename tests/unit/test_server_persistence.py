"""The key server's stored state: what comes back after a restart, and what must not.

Each test runs a :class:`GroupKeyServer`, writes its changes through the daemon's
:class:`StatePersister` into a real SQLite file in ``tmp_path``, then "restarts":
a new key server from the (possibly changed) configuration restores from the file.
A restart may also come with another core clock (a new boot): times are stored as
wall time, so keys keep their remaining lifetime.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.crypto.keymat import Phase1Keys
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId
from groupvpn.runtime.server_persistence import StatePersister
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy
from groupvpn.server.signing import SigningKey
from groupvpn.server.snapshot import SENDER_ID_RESERVATION, SEQ_RESERVATION
from groupvpn.store.server_store import STATE_FILE, ServerStore, StoreError
from groupvpn.wire.dialect import V1, V2
from tests.unit.test_sender_ids import GCM_GROUP
from tests.unit.test_server_groups import SPEC_GROUP, _ike_sa, _policy

KEK = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha-256"], lifetime_seconds=3600)
GROUP = replace(SPEC_GROUP, server_address=IPv4Address("20.0.0.1"), kek=KEK)
KEYS = Phase1Keys(b"s" * 20, b"d" * 20, b"a" * 20, b"e" * 20, b"k" * 24)


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate(1024)


def _server(
    signing_key: SigningKey, group: GroupDefinition = GROUP, offset: float = 1_000_000.0
) -> GroupKeyServer:
    return GroupKeyServer([group], V1, signing_key=signing_key, clock_offset=offset)


def _register(server: GroupKeyServer, address: str, now: float, gateway: str = "gw-member1"):
    sa = replace(_ike_sa(gateway, address), keys=KEYS, peer=(address, 4500))
    assert server.admit(1, sa, now) is not None
    return server.commit(1, sa, now, local_address="20.0.0.1")


def _restart(
    path: Path, signing_key: SigningKey, group: GroupDefinition, offset: float, now: float
) -> tuple[GroupKeyServer, StatePersister]:
    server = _server(signing_key, group, offset)
    return server, StatePersister.open(path, server, now)


def test_keys_seq_members_and_ack_keys_come_back_with_their_remaining_lifetimes(
    tmp_path: Path, signing_key: SigningKey
):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 10.0)
    teks = {tek.policy.name: tek for tek in server.current_teks(1, 10.0)}
    kek = server.current_kek(1, 10.0)
    _register(server, "198.51.100.11", 11.0)
    _register(server, "198.51.100.12", 12.0, "gw-member2")
    seqs = [server.next_sequence(1) for _ in range(3)]
    assert persister.flush()
    persister.store.close()  # no clean shutdown: as after kill -9, nothing more written

    # A new boot: the core clock starts again near 0, wall time went on by 100 s.
    later, offset = 5.0, 1_000_000.0 + 110.0 - 5.0
    again, restarted = _restart(tmp_path, signing_key, GROUP, offset, later)
    [report] = restarted.restored
    assert (report.group, report.teks, report.fresh, report.kek_restored, report.members) == (
        "g1", ("p1", "p2", "p3"), (), True, 2,
    )  # fmt: skip
    for tek in again.current_teks(1, later):
        old = teks[tek.policy.name]
        assert (tek.spi, tek.encryption_key, tek.integrity_key) == (
            old.spi, old.encryption_key, old.integrity_key,
        )  # fmt: skip
        assert tek.remaining(later) == old.remaining(110.0)  # 100 s of wall time passed
    restored_kek = again.current_kek(1, later)
    assert kek is not None and restored_kek is not None
    assert (restored_kek.spi, restored_kek.key, restored_kek.iv) == (kek.spi, kek.key, kek.iv)
    assert again.group_for_kek(kek.spi, later) == 1
    assert again.next_sequence(1) > max(seqs)
    members = {record.address: record for record in again.members()}
    assert set(members) == {"198.51.100.11", "198.51.100.12"}
    assert (members["198.51.100.11"].peer_port, members["198.51.100.11"].local_address) == (
        4500, "20.0.0.1",
    )  # fmt: skip
    assert members["198.51.100.12"].gateway == "gw-member2"
    assert members["198.51.100.11"].registered_at == pytest.approx(11.0 - 105.0)
    old_ack = server.ack_key(1, "198.51.100.11")
    new_ack = again.ack_key(1, "198.51.100.11")
    assert old_ack is not None and new_ack is not None
    assert (new_ack.key, new_ack.sig_hash) == (old_ack.key, old_ack.sig_hash)


def test_seq_is_reserved_ahead_and_written_only_when_a_block_starts(
    tmp_path: Path, signing_key: SigningKey
):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    assert server.next_sequence(1) == 1
    assert server.take_changes().groups == {1}  # the first SEQ starts a block
    for expected in range(2, SEQ_RESERVATION + 1):
        assert server.next_sequence(1) == expected
    assert not server.take_changes()  # inside the block: nothing to write
    assert server.next_sequence(1) == SEQ_RESERVATION + 1
    assert server.take_changes().groups == {1}
    persister.store.close()


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.sampled_from(["seq", "seq", "seq", "send", "sid", "crash"]), max_size=60))
def test_after_a_crash_at_any_point_no_seq_or_sender_id_is_handed_out_twice(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
):
    """kill -9 anywhere: what was sent (only after a successful flush) never comes again."""
    path = tmp_path_factory.mktemp("state")
    group = replace(GCM_GROUP, kek=KEK)

    def start() -> tuple[GroupKeyServer, StatePersister]:
        server = GroupKeyServer([group], V2, signing_key=_SMALL_KEY, clock_offset=0.0)
        return server, StatePersister.open(path, server, 0.0)

    server, persister = start()
    sent_seqs: list[int] = []
    sent_sids: list[int] = []
    taken_seqs: list[int] = []
    taken_sids: list[int] = []
    for step in steps:
        if step == "seq":
            taken_seqs.append(server.next_sequence(1))
        elif step == "sid":
            granted = server.grant_sender_ids(1, 1)
            assert isinstance(granted, tuple)
            taken_sids.append(granted[0].value)
        elif step == "send":
            assert persister.flush()
            sent_seqs += taken_seqs
            sent_sids += taken_sids
            taken_seqs, taken_sids = [], []
        else:
            persister.store.close()  # the process dies: nothing unflushed survives
            server, persister = start()
            taken_seqs, taken_sids = [], []
    seq = server.next_sequence(1)
    granted = server.grant_sender_ids(1, 1)
    assert isinstance(granted, tuple)
    assert all(seq > s for s in sent_seqs)
    assert granted[0].value not in sent_sids and all(granted[0].value > s for s in sent_sids)
    persister.store.close()


_SMALL_KEY = SigningKey.generate(1024)


def test_sender_ids_continue_past_the_reserved_block(tmp_path: Path, signing_key: SigningKey):
    group = replace(GCM_GROUP, kek=KEK)
    server = GroupKeyServer([group], V2, signing_key=signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    assert server.grant_sender_ids(1, 1) == (SenderId(0, SID_BITS),)
    assert persister.flush()
    persister.store.close()
    again = GroupKeyServer([group], V2, signing_key=signing_key)
    StatePersister.open(tmp_path, again, 0.0).store.close()
    assert again.grant_sender_ids(1, 1) == (SenderId(SENDER_ID_RESERVATION, SID_BITS),)


def test_a_policy_changed_while_stopped_gets_a_new_key_and_its_old_one_is_withdrawn(
    tmp_path: Path, signing_key: SigningKey
):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    old = {tek.policy.name: tek.spi for tek in server.current_teks(1, 0.0)}
    _register(server, "198.51.100.11", 1.0)
    assert persister.flush()
    persister.close()

    changed = replace(
        GROUP,
        policies=(GROUP.policies[0], _policy("p2", "10.2.0.0/16", "10.3.0.0/16")),
        gateways=frozenset({"gw-member2"}),
    )
    again, restarted = _restart(tmp_path, signing_key, changed, 1_000_000.0, 2.0)
    [report] = restarted.restored
    assert (report.teks, report.fresh, report.members) == (("p1",), ("p2", "p3"), 0)
    now = {tek.policy.name: tek.spi for tek in again.current_teks(1, 2.0)}
    assert now["p1"] == old["p1"] and now["p2"] != old["p2"]
    # The first push deletes the keys of the changed and the removed policy.
    content = again.push_content(1, again.next_sequence(1), 2.0)
    [delete] = content.deletes
    assert set(delete.spis) == {old["p2"], old["p3"]}
    assert again.members() == []  # its IKE gateway left the group meanwhile
    restarted.close()
    # ... and the member row is gone from the file too.
    _, members = ServerStore.open(tmp_path).load()
    assert members == []


def test_expired_keys_and_unconfigured_groups_do_not_come_back(
    tmp_path: Path, signing_key: SigningKey
):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    server.current_teks(1, 0.0)
    server.next_sequence(1)
    persister.close()
    # 2 hours later: the TEKs (1 hour) and the KEK (1 hour) have expired; SEQ goes on.
    again, restarted = _restart(tmp_path, signing_key, GROUP, 1_000_000.0 + 7200.0, 0.0)
    [report] = restarted.restored
    assert (report.teks, report.kek_restored) == ((), False)
    assert again.next_sequence(1) == SEQ_RESERVATION + 1
    restarted.close()
    other = replace(GROUP, group_id=2, name="g2")
    _, persister3 = _restart(tmp_path, signing_key, other, 1_000_000.0, 0.0)
    assert persister3.restored == []
    persister3.close()
    groups, _ = ServerStore.open(tmp_path).load()
    assert [group.group_id for group in groups] == [2]  # g1 is gone from the file


# -- the file ---------------------------------------------------------------------------------


def test_the_database_and_its_journal_are_private(tmp_path: Path, signing_key: SigningKey):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    _register(server, "198.51.100.11", 1.0)
    assert persister.flush()
    for name in (STATE_FILE, STATE_FILE + "-wal", STATE_FILE + "-shm"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    persister.close()


def test_keys_are_stored_but_never_in_a_repr(tmp_path: Path, signing_key: SigningKey):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    tek = server.current_teks(1, 0.0)[0]
    snapshot = server.snapshot_group(1)
    assert snapshot is not None
    assert tek.encryption_key.hex() not in repr(snapshot)
    assert persister.flush()
    persister.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"SQLite format 3\x00" + b"\xff" * 4000, "is unreadable"),
        (b"not a database at all, just text" * 40, "is unreadable"),
    ],
)
def test_a_corrupt_file_is_an_error_with_the_way_out(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / STATE_FILE
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(StoreError) as error:
        ServerStore.open(tmp_path)
    text = str(error.value)
    assert message in text and "To recover: stop the key server, move" in text
    assert path.read_bytes() == content  # never replaced


def test_a_state_file_others_can_read_is_refused(tmp_path: Path):
    ServerStore.open(tmp_path).close()
    (tmp_path / STATE_FILE).chmod(0o644)
    with pytest.raises(
        StoreError, match=r"accessible by other users \(mode 0644\); run: chmod 600"
    ):
        ServerStore.open(tmp_path)


def test_a_foreign_or_newer_database_is_refused(tmp_path: Path):
    foreign = sqlite3.connect(tmp_path / STATE_FILE)
    foreign.execute("CREATE TABLE t (x)")
    foreign.commit()
    foreign.close()
    (tmp_path / STATE_FILE).chmod(0o600)
    with pytest.raises(StoreError, match="is not a groupvpn key server state file"):
        ServerStore.open(tmp_path)
    (tmp_path / STATE_FILE).unlink()
    ServerStore.open(tmp_path).close()
    newer = sqlite3.connect(tmp_path / STATE_FILE)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    with pytest.raises(StoreError, match="has state format 99; this groupvpn reads format 1"):
        ServerStore.open(tmp_path)


def test_nonsense_rows_are_an_error_not_a_fresh_start(tmp_path: Path, signing_key: SigningKey):
    server = _server(signing_key)
    StatePersister.open(tmp_path, server, 0.0).close()
    db = sqlite3.connect(tmp_path / STATE_FILE)
    db.execute("UPDATE groups SET sequence_reserved = -5")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"holds unusable state .*sequence_reserved is -5"):
        StatePersister.open(tmp_path, _server(signing_key), 0.0)


def test_a_failed_write_holds_back_sending_and_is_retried(
    tmp_path: Path, signing_key: SigningKey, caplog: pytest.LogCaptureFixture
):
    server = _server(signing_key)
    persister = StatePersister.open(tmp_path, server, 0.0)
    persister.store.close()  # every write now fails
    server.next_sequence(1)
    assert persister.flush() is False
    assert "nothing is sent until it can be written" in caplog.text
    persister.store = ServerStore.open(tmp_path)  # the disk is back
    assert persister.flush() is True
    groups, _ = persister.store.load()
    assert groups[0].sequence_reserved == SEQ_RESERVATION  # the pending change was kept
    persister.close()
