"""DaemonProcess on a trivial command (no root needed), and the log-line patterns."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.interop.daemon import (
    IKE_SA_FAILED,
    IKE_SA_UP,
    DaemonError,
    DaemonProcess,
    groupvpn_argv,
    read_debug_keys,
)

SCRIPT = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda *a: print("got usr1", flush=True))
def term(*a):
    print("bye", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
print("hello 1")
print("oops", file=sys.stderr)
while True:
    time.sleep(0.05)
"""


def test_lines_signals_and_stop(tmp_path: Path) -> None:
    d = DaemonProcess([sys.executable, "-c", SCRIPT], tmp_path / "d.log").start()
    try:
        assert d.returncode is None and d.is_alive()
        assert d.wait_for_line(r"hello (\d+)", timeout=10)[1] == "1"
        assert d.wait_for_line("oops", timeout=5)  # stderr goes to the same log
        mark = d.log_offset()
        d.send_signal(signal.SIGUSR1)
        d.wait_for_line("got usr1", timeout=5, since=mark)
        with pytest.raises(DaemonError, match="no line matching"):
            d.wait_for_line("hello", timeout=0.2, since=d.log_offset())
    finally:
        rc = d.stop()
    assert rc == 3 and d.returncode == 3 and not d.is_alive()
    assert "bye" in d.log_text()
    assert d.stop() == 3  # idempotent


def test_stop_escalates_to_kill(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-c",
        "import signal,time; signal.signal(15, 1); print('up', flush=True); time.sleep(60)",
    ]
    with DaemonProcess(argv, tmp_path / "d.log") as d:
        d.wait_for_line("up", timeout=10)
        assert d.stop(timeout=0.3) == -signal.SIGKILL


def test_wait_for_line_reports_early_exit(tmp_path: Path) -> None:
    d = DaemonProcess(
        [sys.executable, "-c", "print('starting'); raise SystemExit(7)"], tmp_path / "d.log"
    ).start()
    with pytest.raises(DaemonError, match=r"exited with 7[\s\S]*starting"):
        d.wait_for_line("never printed", timeout=10)
    assert d.returncode == 7
    # a line printed just before exiting is still found
    assert d.wait_for_line("starting", timeout=1)


def test_ike_log_patterns() -> None:
    up = IKE_SA_UP.search(
        "2026-11-27 INFO IKE SA up: peer=198.51.100.2:500 gateway=gw1 role=responder "
        "mode=main encryption=aes-128-cbc hash=sha1 dh-group=group14 lifetime=28800s "
        "cookies=0123456789abcdef:fedcba9876543210"
    )
    assert up is not None
    assert up.groupdict() == {
        "peer": "198.51.100.2:500",
        "gateway": "gw1",
        "role": "responder",
        "mode": "main",
        "encryption": "aes-128-cbc",
        "hash": "sha1",
        "dh_group": "group14",
        "lifetime": "28800",
        "icookie": "0123456789abcdef",
        "rcookie": "fedcba9876543210",
    }
    failed = IKE_SA_FAILED.search(
        "IKE SA failed: peer=198.51.100.1:500 gateway=gw1 role=initiator mode=main "
        "reason=authentication failed"
    )
    assert failed is not None and failed["reason"] == "authentication failed"


def test_ike_log_patterns_match_what_the_daemons_log() -> None:
    """The harness regexes against the daemons' own line formatter, not a copy of it."""
    from groupvpn.ike.events import IkeSaEstablished, IkeSaFailed, IkeSaInfo
    from groupvpn.runtime.logfmt import describe_event

    info = IkeSaInfo(
        bytes.fromhex("0123456789abcdef"), bytes.fromhex("fedcba9876543210"),
        ("198.51.100.2", 500), "gw1", "responder", "main", "aes-128-cbc", "sha1", 14,
        28800, 0.0, "ipv4:198.51.100.1", "ipv4:198.51.100.2",
    )  # fmt: skip
    up = IKE_SA_UP.search(describe_event(IkeSaEstablished(info))[1])
    assert up is not None and (up["icookie"], up["dh_group"]) == ("0123456789abcdef", "group14")
    event = IkeSaFailed(("198.51.100.1", 500), "gw1", "initiator", "main", "no answer", 24)
    failed = IKE_SA_FAILED.search(describe_event(event)[1])
    assert failed is not None
    assert (failed["notify"], failed["reason"]) == ("AUTHENTICATION-FAILED", "no answer")


def test_read_debug_keys(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("0123456789ABCDEF,00112233445566778899aabbccddeeff\n\n")
    f.chmod(0o600)
    assert read_debug_keys(f) == [("0123456789abcdef", "00112233445566778899aabbccddeeff")]
    f.write_text("0123,00\n")
    with pytest.raises(ValueError, match="bad debug-keys line"):
        read_debug_keys(f)


def test_groupvpn_argv() -> None:
    assert groupvpn_argv("member", "/x/gm.conf", debug_keys="/x/keys") == [
        sys.executable,
        *("-m", "groupvpn", "member", "-c", "/x/gm.conf", "--port", "500"),
        *("--control", "/x/gm.sock"),
        *("--debug-keys", "/x/keys"),
    ]
