"""A steady UDP stream with sequence numbers, for loss checks across a namespace lab.

Run inside a namespace with ``python -m tests.system.udp_stream``:

* ``send SOURCE DESTINATION PORT RATE SECONDS``: datagrams 1, 2, ... (a 4-octet
  big-endian sequence number each), RATE per second on a fixed schedule, so a slow
  moment does not stretch the stream; prints ``{"sent": N}``;
* ``receive ADDRESS PORT``: prints ``ready`` once bound, collects sequence numbers
  until SIGTERM, then prints ``{"received": [sorted unique], "duplicates": n}`` (the
  shape ``groupvpn.lab.demo.Background`` stops and reads).
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time
from typing import Any

SEQUENCE = struct.Struct("!I")


def send(source: str, destination: str, port: int, rate: float, seconds: float) -> Any:
    count = round(rate * seconds)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        start = time.monotonic()
        for sequence in range(1, count + 1):
            delay = start + (sequence - 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto(SEQUENCE.pack(sequence), (destination, port))
    return {"sent": count}


def receive(address: str, port: int) -> Any:
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    seen: set[int] = set()
    duplicates = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, port))
        sock.settimeout(0.1)
        print("ready", flush=True)
        while not stopping:
            try:
                data = sock.recv(64)
            except (TimeoutError, InterruptedError):
                continue
            if len(data) != SEQUENCE.size:
                continue
            (sequence,) = SEQUENCE.unpack(data)
            duplicates += sequence in seen
            seen.add(sequence)
    return {"received": sorted(seen), "duplicates": duplicates}


USAGE = (
    "usage: python -m tests.system.udp_stream send SOURCE DESTINATION PORT RATE SECONDS\n"
    "       python -m tests.system.udp_stream receive ADDRESS PORT"
)


def main(argv: list[str] | None = None) -> int:
    word, *args = sys.argv[1:] if argv is None else argv
    if word == "send" and len(args) == 5:
        source, destination, port, rate, seconds = args
        result = send(source, destination, int(port), float(rate), float(seconds))
    elif word == "receive" and len(args) == 2:
        result = receive(args[0], int(args[1]))
    else:
        print(USAGE, file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
