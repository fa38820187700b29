"""Coverage-guided fuzzing with atheris (a test dependency; test_atheris_campaign.py
runs every target for a bounded number of inputs, and pytest does not collect this file).

    python tests/fuzz/atheris_endpoints.py TARGET [atheris/libFuzzer options]
    python tests/fuzz/atheris_endpoints.py responder -max_total_time=600

TARGET is one of: responder (a Phase 1 responder in Main Mode, fresh, plus
one half-open negotiation), wire (decode_message in both dialects), push (the
member's push decoder, open_push, holding the KEK of the Cisco reference push:
each input is tried as a datagram and, so that the decoder behind the KEK's
encryption is reached, as a header and plaintext that the harness encrypts
under that KEK).  The seed corpus is tests/fuzz/corpus; new
inputs libFuzzer finds go to a scratch directory unless you name one.  Any
exception other than DecodeError (wire), and any InternalError event
(responder), is a crash.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]

with atheris.instrument_imports():
    from groupvpn.crypto.ciphers import CIPHERS, cbc_encrypt
    from groupvpn.gdoi.push import open_push
    from groupvpn.ike.events import InternalError
    from groupvpn.wire.buffer import DecodeError
    from groupvpn.wire.constants import HEADER_LENGTH
    from groupvpn.wire.dialect import V1, V2
    from groupvpn.wire.message import decode_message

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import contextlib

from tests.ikepair import INITIATOR_IP, PORT, make_pair
from tests.unit.test_gdoi_push import cisco_receivers
from tests.vectors import gdoi_cisco as vec

CORPUS = Path(__file__).parent / "corpus"


def responder(data: bytes) -> None:
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, PORT), 0.0)
    pair.responder.receive_datagram(data, (INITIATOR_IP, PORT), 0.5)
    while (event := pair.responder.next_event()) is not None:
        if isinstance(event, InternalError):
            raise RuntimeError(event.detail)


def wire(data: bytes) -> None:
    for dialect in (V1, V2):
        with contextlib.suppress(DecodeError):
            decode_message(data, dialect)


CISCO_RECEIVERS = cisco_receivers()
HEADER = HEADER_LENGTH


def push(data: bytes) -> None:
    open_push(data, CISCO_RECEIVERS)
    if len(data) < HEADER:
        return
    plaintext = data[HEADER:] + bytes(-len(data[HEADER:]) % 8)  # whole 3DES blocks
    ciphertext = cbc_encrypt(CIPHERS["3des-cbc"], vec.KEK_KEY, vec.KEK_IV, plaintext)
    length = (HEADER + len(ciphertext)).to_bytes(4, "big")
    open_push(data[:24] + length + ciphertext, CISCO_RECEIVERS)


TARGETS: dict[str, tuple[Callable[[bytes], None], tuple[str, ...]]] = {
    "responder": (responder, ("phase1-main", "informational")),
    "wire": (wire, ("phase1-main", "phase1-aggressive", "informational", "pull", "push", "ack")),
    "push": (push, ("push", "push-plain")),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    target, corpora = TARGETS[sys.argv[1]]
    options = sys.argv[2:]
    if not any(not option.startswith("-") for option in options):
        # libFuzzer writes new inputs into the first corpus directory: a scratch copy.
        scratch = tempfile.mkdtemp(prefix="groupvpn-fuzz-")
        options = [scratch, *(str(CORPUS / c) for c in corpora), *options]
    atheris.Setup([sys.argv[0], *options], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
