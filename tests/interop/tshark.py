"""tshark as an independent ISAKMP/GDOI capture and decoder.

* :func:`capture` records UDP inside a namespace for the duration of a
  ``with`` block and stops tshark cleanly (SIGINT) so the pcap is complete.
* :func:`decode` / :func:`decode_verbose` / :func:`malformed_frames` read a
  pcap with ``udp/848`` (and any other port given) decoded as ISAKMP and,
  given ``(icookie_hex, ka_hex)`` pairs, IKEv1 decryption switched on.
* :func:`payload_types` / :func:`assert_decrypted` check that encrypted
  Phase 1 messages were really decrypted (their inner payload types show up).

tshark decodes udp/500 as ISAKMP by itself; port 848 needs
``-d udp.port==848,isakmp``.  With ``marker=True`` the ports are decoded as
``udpencap`` instead, for peers that prepend the non-ESP marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.interop import netns

TSHARK = "tshark"
#: ISAKMP payload type numbers (RFC 2408 / RFC 6407).
PAYLOAD_SA = 1
PAYLOAD_KE = 4
PAYLOAD_ID = 5
PAYLOAD_HASH = 8
PAYLOAD_NONCE = 10
PAYLOAD_N = 11
PAYLOAD_VID = 13
PAYLOAD_NAT_D = 20
EXCH_MAIN = 2
EXCH_AGGRESSIVE = 4

DEFAULT_FIELDS = (
    "frame.number",
    "udp.srcport",
    "udp.dstport",
    "isakmp.ispi",
    "isakmp.rspi",
    "isakmp.exchangetype",
    "isakmp.flag_e",
    "isakmp.messageid",
    "isakmp.typepayload",
)

Keys = Iterable[tuple[str, str]]
Row = dict[str, list[str]]


def tshark_unavailable_reason() -> str | None:
    if shutil.which(TSHARK) is None:
        return "tshark not installed (run scripts/setup as root)"
    return None


def require_tshark() -> None:
    """Skip when tshark is missing; in CI (``CI`` set) fail instead."""
    reason = tshark_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class Capture:
    """A running capture; ``pcap`` is complete once the ``with`` block is left."""

    def __init__(self, pcap: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.pcap = pcap
        self.proc = proc
        self.log = log

    def stderr_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def capture(
    ns: str | None,
    iface: str,
    pcap_path: str | os.PathLike[str],
    *,
    capture_filter: str = "udp",
    start_timeout: float = 15.0,
    flush_timeout: float = 2.0,
    pair: netns.NetnsPair | None = None,
) -> Iterator[Capture]:
    """Capture ``capture_filter`` traffic on ``iface`` inside ``ns`` into ``pcap_path``.

    Enters only once tshark reports "Capturing on ...", so nothing sent inside
    the block is missed.  The file is classic pcap.

    On exit, waits until the pcap holds as many frames as went over the
    interface meanwhile (dumpcap hands packets over only when the kernel
    retires a TPACKET_V3 block, up to ~1 s later, and a SIGINT drops what is
    not handed over yet).  Frames the filter rejects make the counts differ;
    then it waits until ``flush_timeout`` s after the link went quiet.  Then
    it sends SIGINT and waits for tshark to finish (SIGKILL as a last resort).
    With ``pair`` given, the pair's teardown also stops tshark.
    """
    require_tshark()
    pcap = Path(pcap_path)
    pcap.parent.mkdir(parents=True, exist_ok=True)
    pcap.unlink(missing_ok=True)
    log = pcap.with_name(pcap.name + ".tshark.log")
    argv = [TSHARK, "-n", "-q", "-i", iface, "-f", capture_filter, "-F", "pcap", "-w", str(pcap)]
    with open(log, "wb") as err:
        proc: subprocess.Popen[bytes] = netns.run_in(
            ns, argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    if pair is not None:
        pair.adopt(proc)
    cap = Capture(pcap, proc, log)
    try:
        deadline = time.monotonic() + start_timeout
        # "Capturing on" comes first; "File:" once dumpcap has opened the
        # interface, set the filter and created the file.
        while not _capture_started(cap.stderr_text()):
            if proc.poll() is not None:
                raise RuntimeError(f"tshark exited with {proc.returncode}:\n{cap.stderr_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"tshark did not start in {start_timeout}s:\n{cap.stderr_text()}"
                )
            time.sleep(0.02)
        start_count = netns.link_packets(ns, iface)
        yield cap
        _wait_flushed(cap, lambda: netns.link_packets(ns, iface) - start_count, flush_timeout)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                netns.terminate_process(proc)


def _capture_started(stderr: str) -> bool:
    return "Capturing on" in stderr and ("File:" in stderr or "Capture started" in stderr)


def pcap_frame_count(path: str | os.PathLike[str]) -> int:
    """Complete frames in a classic pcap file (it may still be being written)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < 24:
        return 0
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    count, off = 0, 24
    while off + 16 <= len(data):
        (incl_len,) = struct.unpack_from(order + "I", data, off + 8)
        off += 16 + incl_len
        if off > len(data):
            break
        count += 1
    return count


def _wait_flushed(cap: Capture, link_frames: Callable[[], int], flush_timeout: float) -> None:
    last_seen = -1
    quiet_since = time.monotonic()
    while True:
        expected = link_frames()
        if expected != last_seen:
            last_seen, quiet_since = expected, time.monotonic()
        if pcap_frame_count(cap.pcap) >= expected:
            return
        if time.monotonic() - quiet_since > flush_timeout or cap.proc.poll() is not None:
            return
        time.sleep(0.02)


def _decode_args(ports: Sequence[int], keys: Keys, marker: bool) -> list[str]:
    dissector = "udpencap" if marker else "isakmp"
    args: list[str] = []
    for port in ports:
        if port == 500 and not marker:
            continue  # tshark's default
        args += ["-d", f"udp.port=={port},{dissector}"]
    for icookie, ka in keys:
        icookie, ka = icookie.lower(), ka.lower()
        if not re.fullmatch(r"[0-9a-f]{16}", icookie) or not re.fullmatch(r"(?:[0-9a-f]{2})+", ka):
            raise ValueError(f"bad decryption key pair {icookie!r}, {ka!r}")
        # unquoted hex: '"..."' is rejected for byte fields
        args += ["-o", f"uat:ikev1_decryption_table:{icookie},{ka}"]
    return args


def run_tshark(
    pcap: str | os.PathLike[str],
    args: Sequence[str],
    *,
    ports: Sequence[int] = (500, 848),
    keys: Keys = (),
    marker: bool = False,
    display_filter: str | None = None,
) -> str:
    """``tshark -r PCAP <decode-as/decryption options> [-Y FILTER] ARGS``; returns stdout."""
    require_tshark()
    argv = [TSHARK, "-n", "-r", str(pcap), *_decode_args(ports, list(keys), marker)]
    if display_filter:
        argv += ["-Y", display_filter]
    argv += list(args)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stderr}")
    return res.stdout


def decode(
    pcap: str | os.PathLike[str],
    ports: Sequence[int] = (500, 848),
    keys: Keys = (),
    fields: Sequence[str] = DEFAULT_FIELDS,
    *,
    marker: bool = False,
    display_filter: str | None = None,
) -> list[Row]:
    """One dict per frame: field name -> list of values (all occurrences, in order).

    Fields absent from a frame are absent from its dict.  ``frame.number`` is
    always included.
    """
    fields = list(dict.fromkeys(["frame.number", *fields]))
    args = ["-T", "json"]
    for f in fields:
        args += ["-e", f]
    out = run_tshark(
        pcap, args, ports=ports, keys=keys, marker=marker, display_filter=display_filter
    )
    packets: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    rows: list[Row] = []
    for pkt in packets:
        layers: dict[str, Any] = pkt["_source"]["layers"]
        rows.append({k: [str(v) for v in vals] for k, vals in layers.items()})
    return rows


def decode_verbose(
    pcap: str | os.PathLike[str],
    ports: Sequence[int] = (500, 848),
    keys: Keys = (),
    *,
    marker: bool = False,
    display_filter: str | None = None,
) -> str:
    """The full ``tshark -V`` packet tree (for debugging and failure messages)."""
    return run_tshark(
        pcap, ["-V"], ports=ports, keys=keys, marker=marker, display_filter=display_filter
    )


def malformed_frames(
    pcap: str | os.PathLike[str],
    ports: Sequence[int] = (500, 848),
    keys: Keys = (),
    *,
    marker: bool = False,
) -> list[int]:
    """Frame numbers tshark flags as malformed (``_ws.malformed``)."""
    rows = decode(
        pcap, ports, keys, ["frame.number"], marker=marker, display_filter="_ws.malformed"
    )
    return [int(r["frame.number"][0]) for r in rows]


def frame_number(row: Row) -> int:
    return int(row["frame.number"][0])


def payload_types(
    pcap: str | os.PathLike[str],
    ports: Sequence[int] = (500, 848),
    keys: Keys = (),
    *,
    marker: bool = False,
) -> list[tuple[int, int, bool, list[int]]]:
    """Per ISAKMP frame: ``(frame, exchange type, encrypted flag, payload types)``.

    For an encrypted message the payload types are only visible when tshark
    could decrypt it, so this is the check that decryption worked.
    """
    rows = decode(
        pcap,
        ports,
        keys,
        ["isakmp.exchangetype", "isakmp.flag_e", "isakmp.typepayload"],
        marker=marker,
        display_filter="isakmp",
    )
    out: list[tuple[int, int, bool, list[int]]] = []
    for r in rows:
        exch = int(r.get("isakmp.exchangetype", ["-1"])[0])
        enc = r.get("isakmp.flag_e", ["0"])[0] in ("1", "True", "true")
        types = [int(t) for t in r.get("isakmp.typepayload", [])]
        out.append((frame_number(r), exch, enc, types))
    return out


def assert_decrypted(
    pcap: str | os.PathLike[str],
    keys: Keys,
    *,
    exchange: int = EXCH_MAIN,
    required: Sequence[int] = (PAYLOAD_ID, PAYLOAD_HASH),
    min_messages: int = 2,
    ports: Sequence[int] = (500, 848),
    marker: bool = False,
) -> list[tuple[int, int, bool, list[int]]]:
    """Assert that the encrypted messages of ``exchange`` were decrypted.

    At least ``min_messages`` frames with the E flag set must exist in the
    given exchange, and each must show all ``required`` payload types (for
    Main Mode: MM5/MM6 carry ID 5 and HASH 8).  Returns those frames.
    """
    keys = list(keys)
    frames = [
        f for f in payload_types(pcap, ports, keys, marker=marker) if f[1] == exchange and f[2]
    ]
    detail = f"frames (no, exch, E, payloads): {frames}"
    assert len(frames) >= min_messages, f"expected >= {min_messages} encrypted frames; {detail}"
    for frame in frames:
        missing = [t for t in required if t not in frame[3]]
        assert not missing, (
            f"frame {frame[0]}: payloads {missing} not visible, decryption failed? {detail}\n"
            + decode_verbose(
                pcap, ports, keys, marker=marker, display_filter=f"frame.number=={frame[0]}"
            )
        )
    return frames
