"""Prove the interop harness on strongSwan <-> strongSwan.

Two charon instances in two namespaces (a = initiator 198.51.100.1, b =
responder 198.51.100.2), tshark capturing in ``a``; the capture is decrypted
with the Ka from the initiator's log.  Our own daemons will later take the
place of either charon.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.interop import tshark
from tests.interop.netns import NetnsPair
from tests.interop.strongswan import IkeSa, StrongSwan

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _start_pair(
    pair: NetnsPair, tmp_path: Path, proposals: str, psk_b: str | None = None
) -> tuple[StrongSwan, StrongSwan]:
    extra = {} if psk_b is None else {"psk": psk_b}
    responder = StrongSwan.in_pair(pair, "b", tmp_path / "b", proposals=proposals, **extra)
    responder.start()
    initiator = StrongSwan.in_pair(pair, "a", tmp_path / "a", proposals=proposals).start()
    return initiator, responder


def _established(ss: StrongSwan, conn: str) -> IkeSa:
    sa = ss.wait_established(timeout=5.0, conn=conn)
    assert sa is not None, f"{ss.name}: no ESTABLISHED {conn} SA\n{ss.log_tail()}"
    return sa


@pytest.mark.parametrize(
    ("conn", "proposals", "ka_len", "exchange", "required", "encrypted_msgs"),
    [
        # MM5/MM6 are encrypted and carry ID + HASH
        ("mm", "aes128-sha1-modp2048", 16, tshark.EXCH_MAIN, (5, 8), 2),
        # AM3 (HASH_I, NAT-D) is the only encrypted AM message; Ka is 3DES's 24 bytes
        ("am", "3des-sha1-modp1024", 24, tshark.EXCH_AGGRESSIVE, (8,), 1),
    ],
    ids=["main-aes128-sha1-modp2048", "aggressive-3des-sha1-modp1024"],
)
def test_phase1_established_and_decrypted(
    netns_pair: NetnsPair,
    tmp_path: Path,
    conn: str,
    proposals: str,
    ka_len: int,
    exchange: int,
    required: tuple[int, ...],
    encrypted_msgs: int,
) -> None:
    initiator, responder = _start_pair(netns_pair, tmp_path, proposals)
    pcap = tmp_path / f"{conn}.pcap"
    with tshark.capture(netns_pair.a, netns_pair.iface_a, pcap, pair=netns_pair):
        ok = initiator.initiate(conn, timeout=5.0)
    assert ok, initiator.last_output + initiator.log_tail()

    sa_i = _established(initiator, conn)
    sa_r = _established(responder, conn)
    assert (sa_i.icookie, sa_i.rcookie) == (sa_r.icookie, sa_r.rcookie)

    # Both sides logged the same keys for this SA, under the cookies swanctl shows.
    all_i, all_r = initiator.keys(), responder.keys()
    keys_i = [k for k in all_i if k.icookie == sa_i.icookie]
    keys_r = [k for k in all_r if k.icookie == sa_i.icookie]
    assert len(keys_i) == 1 and len(keys_r) == 1, (all_i, all_r)
    assert keys_i[0].rcookie == sa_i.rcookie
    assert keys_i[0].conn == conn
    assert keys_i[0].ka == keys_r[0].ka
    assert keys_i[0].skeyid_e == keys_r[0].skeyid_e
    assert len(bytes.fromhex(keys_i[0].ka)) == ka_len

    # The whole handshake is in the capture, on udp/500, and nothing else.
    rows = tshark.decode(pcap, fields=["udp.srcport", "udp.dstport", "isakmp.ispi"])
    n_msgs = 6 if conn == "mm" else 3
    assert len(rows) == n_msgs, rows
    assert all(r["udp.srcport"] == ["500"] and r["udp.dstport"] == ["500"] for r in rows)
    assert all(r["isakmp.ispi"] == [sa_i.icookie] for r in rows)

    # Without the key the encrypted messages are opaque; with Ka they decrypt.
    opaque = [f for f in tshark.payload_types(pcap) if f[2]]
    assert len(opaque) == encrypted_msgs and all(not f[3] for f in opaque), opaque
    uat = initiator.uat_keys()
    frames = tshark.assert_decrypted(
        pcap, uat, exchange=exchange, required=required, min_messages=encrypted_msgs
    )
    assert len(frames) == encrypted_msgs
    assert tshark.malformed_frames(pcap, keys=uat) == []


def test_wrong_psk_fails_cleanly(netns_pair: NetnsPair, tmp_path: Path) -> None:
    initiator, responder = _start_pair(
        netns_pair, tmp_path, "aes128-sha1-modp2048", psk_b="not-the-same-psk-0123456789"
    )
    t0 = time.monotonic()
    assert not initiator.initiate("mm", timeout=1.0), initiator.last_output
    assert time.monotonic() - t0 < 10.0
    assert initiator.wait_established(timeout=0.5) is None, initiator.log_tail()
    assert responder.wait_established(timeout=0.5) is None, responder.log_tail()
    # The responder saw MM5 but could not make sense of it (wrong SKEYID_e).
    assert "could not decrypt payloads" in responder.log_text()
    assert initiator.is_alive() and responder.is_alive()
    assert initiator.stop() is not None
    assert responder.stop() is not None
    assert not initiator.is_alive() and not responder.is_alive()
