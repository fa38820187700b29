"""Write the fuzz seed corpus: real messages of every exchange, one file each.

Run from the repository root when the wire formats change::

    python -m tests.fuzz.make_corpus

Sources: our own exchanges driven in memory (phase 1 in both modes,
Informational, GROUPKEY-PULL in both dialects, GROUPKEY-PUSH rekeys and
heartbeats, rekey ACKs), the strongSwan handshakes captured in the lab
(tests/vectors/strongswan) and the Cisco reference trace (tests/vectors).
Encrypted messages are kept as sent and also, under ``*-plain``, as header
plus plaintext, so a harness can re-encrypt them under a live SA's keys and
reach the payload decoders behind decryption.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from unittest import mock

from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.crypto import ciphers
from groupvpn.ike import sa as sa_module
from groupvpn.ike.informational import isakmp_delete, isakmp_notify, protected_informational
from groupvpn.wire.constants import HEADER_LENGTH, ExchangeType, NotifyType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.message import pull_header
from tests.ikepair import INITIATOR_IP, RESPONDER_IP, make_pair, peer
from tests.pcaputil import isakmp_messages
from tests.unit import member_rekey_net
from tests.unit.test_gdoi_push import CISCO_PUSH
from tests.unit.test_server_kek import KEK_GROUP
from tests.vectors import cisco_loopback
from tests.vectors import gdoi_cisco as vec

GROUP = replace(KEK_GROUP, server_address=None)
Receive = Callable[[bytes, tuple[str, int], float], None]
CORPUS = Path(__file__).parent / "corpus"
VECTORS = Path(__file__).parent.parent / "vectors" / "strongswan"


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.bin").write_bytes(data)


@contextmanager
def plaintexts() -> Iterator[dict[bytes, bytes]]:
    """Every ciphertext an IKE SA decrypts meanwhile, mapped to its plaintext."""
    seen: dict[bytes, bytes] = {}

    def recording(cipher: ciphers.CipherSuite, key: bytes, iv: bytes, data: bytes) -> bytes:
        seen[data] = plain = ciphers.cbc_decrypt(cipher, key, iv, data)
        return plain

    with mock.patch.object(sa_module, "cbc_decrypt", recording):
        yield seen


def _write_plain(target: str, name: str, data: bytes, seen: dict[bytes, bytes]) -> None:
    plain = seen.get(data[HEADER_LENGTH:])
    if plain is not None:
        _write(target, name, data[:HEADER_LENGTH] + plain)


def phase1() -> None:
    for mode in ("main", "aggressive"):
        pair = make_pair(peer(RESPONDER_IP, mode=mode), peer(INITIATOR_IP, mode=mode))
        with plaintexts() as seen:
            pair.initiator.initiate("gw", 0.0)
            pair.transfer()
        for number, (sender, data) in enumerate(pair.wire, 1):
            _write(f"phase1-{mode}", f"ours-{sender}{number}", data)
            _write_plain(f"phase1-{mode}-plain", f"ours-{sender}{number}", data, seen)
        [info] = pair.initiator.established()
        sa = pair.initiator._table.find(info.initiator_cookie, info.responder_cookie)
        assert sa is not None
        probe = isakmp_notify(sa, NotifyType.R_U_THERE, b"\0\0\0\1")
        _write("informational", f"ours-{mode}-dpd", protected_informational(sa, probe, 7))
        _write(
            "informational",
            f"ours-{mode}-delete",
            protected_informational(sa, isakmp_delete(sa), 9),
        )
    for name in ("MM1", "MM2", "MM3", "MM4", "MM5", "MM6"):
        _write("phase1-main", f"cisco-{name.lower()}", getattr(cisco_loopback, name))
    for capture in sorted(VECTORS.glob("*.pcap")):
        mode = "aggressive" if "-am-" in capture.name else "main"
        for number, datagram in enumerate(isakmp_messages(capture), 1):
            exchange = pull_header(datagram.payload).exchange_type
            target = "informational" if exchange == ExchangeType.INFORMATIONAL else f"phase1-{mode}"
            _write(target, f"strongswan-{capture.stem[11:24]}-{number}", datagram.payload)


def _recording(receive: Receive, wire: list[bytes]) -> Receive:
    def recording(data: bytes, addr: tuple[str, int], now: float) -> None:
        wire.append(data)
        receive(data, addr, now)

    return recording


def gdoi(dialect: Dialect, private_key: rsa.RSAPrivateKey) -> None:
    name = "v1" if dialect is V1 else "v2"
    net = member_rekey_net.rekey_net(GROUP, dialect, private_key, register=False)
    wire: list[bytes] = []
    for core in (net.server, net.member):
        core.receive_datagram = _recording(core.receive_datagram, wire)  # type: ignore[method-assign,assignment]
    with plaintexts() as seen:
        net.run(until=1.0)
    for number, data in enumerate(wire, 1):
        if pull_header(data).exchange_type == ExchangeType.GROUPKEY_PULL:
            _write("pull", f"ours-{name}-{number}", data)
            _write_plain("pull-plain", f"ours-{name}-{number}", data, seen)
    net.run(until=100.0)
    rekey = net.rekey(1, net.new_teks())
    _write("push", f"ours-{name}-rekey", rekey)
    _write("push", f"ours-{name}-heartbeat", net.heartbeat(2))
    net.deliver(rekey)
    for number, (ack, _) in enumerate(net.acks, 1):
        _write("ack", f"ours-{name}-{number}", ack)


def main() -> None:
    # Our own exchanges use fresh keys each run: replace them, keep the rest.
    for old in CORPUS.glob("*/ours-*.bin"):
        old.unlink()
    phase1()
    private_key = rsa.generate_private_key(65537, 1024)
    for dialect in (V1, V2):
        gdoi(dialect, private_key)
    for name in ("PULL1", "PULL2", "PULL3", "PULL4"):
        _write("pull", f"cisco-{name.lower()}", getattr(cisco_loopback, name))
    _write("push", "cisco-push", CISCO_PUSH)
    # Header and plaintext, for the atheris push target, which encrypts it under the
    # Cisco KEK it holds (gdoi-wire.md §9).
    suite = ciphers.CIPHERS["3des-cbc"]
    plaintext = ciphers.cbc_decrypt(suite, vec.KEK_KEY, vec.KEK_IV, CISCO_PUSH[HEADER_LENGTH:])
    _write("push-plain", "cisco-push", CISCO_PUSH[:HEADER_LENGTH] + plaintext)


if __name__ == "__main__":
    main()
