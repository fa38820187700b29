"""``--metrics``: address parsing, the exposition text, and the HTTP server's answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from groupvpn.cli.main import cli
from groupvpn.runtime import metrics
from groupvpn.runtime.base import Daemon, DaemonOptions, StartupError
from groupvpn.runtime.metrics import (
    MetricsAddressError,
    MetricsServer,
    parse_metrics_address,
)
from groupvpn.runtime.metrics_families import member_families, render, server_families
from tests.unit.test_server_statistics import CONFIGURED, busy_statistics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9848", ("127.0.0.1", 9848)),
        (":9848", ("127.0.0.1", 9848)),
        ("127.0.0.5:1", ("127.0.0.5", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::1]:9848", ("::1", 9848)),
    ],
)
def test_metrics_addresses_default_to_loopback(text: str, expected: tuple[str, int]):
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "port must be a number"),
        ("0", "port must be a number"),
        ("65536", "port must be a number"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:http", "port must be a number"),
        ("localhost:9848", "is not an IP address"),
        ("1.2.3:9848", "is not an IP address"),
        ("::1:9848", "in brackets"),
    ],
)
def test_bad_metrics_addresses_say_what_is_wrong(text: str, words: str):
    with pytest.raises(MetricsAddressError, match=words):
        parse_metrics_address(text)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (the official parser)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def server_text() -> bytes:
    view = busy_statistics().view(CONFIGURED, {"g1": 1, "g2": 1}, 160.0, "", {"unknown gateway": 7})
    return render(lambda: server_families(view))


def test_server_metrics_carry_the_statistics_with_group_and_reason_labels():
    found = samples(server_text())
    assert found[("groupvpn_server_members", (("group", "g1"),))] == 1
    assert found[("groupvpn_server_registrations_total", (("group", "g1"),))] == 2
    assert found[("groupvpn_server_registrations_total", (("group", "g2"),))] == 1
    assert found[("groupvpn_server_rekeys_sent_total", (("group", "g1"),))] == 2
    assert found[("groupvpn_server_rekey_retransmissions_total", (("group", "g1"),))] == 2
    assert found[("groupvpn_server_push_copies_sent_total", (("group", "g1"),))] == 6
    reason = (("group", "g1"), ("reason", "operator-request"))
    assert found[("groupvpn_server_rekey_reasons_total", reason)] == 1
    result = (("group", "g1"), ("result", "accepted"))
    assert found[("groupvpn_server_acks_received_total", result)] == 3
    removed = (("group", "g1"), ("reason", "inactive"))
    assert found[("groupvpn_server_members_removed_total", removed)] == 1
    failed = (("reason", "invalid-id-information"),)
    assert found[("groupvpn_server_registration_failures_total", failed)] == 1
    assert found[("groupvpn_server_acks_dropped_total", (("reason", "bad-hash"),))] == 6
    phase1 = ("groupvpn_server_phase1_drops_total", (("reason", "unknown gateway"),))
    assert found[phase1] == 7
    assert found[("groupvpn_server_statistics_age_seconds", ())] == 60
    # The process's own metrics come along (memory, CPU, descriptors).
    assert any(name.startswith("groupvpn_process_") for name, _ in found)


def test_the_text_is_exposition_format_0_0_4_with_help_and_type_lines():
    lines = server_text().decode().splitlines()
    assert "# TYPE groupvpn_server_registrations_total counter" in lines
    assert "# TYPE groupvpn_server_members gauge" in lines
    helps = {line.split()[2] for line in lines if line.startswith("# HELP ")}
    types = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    assert helps == types and "groupvpn_server_registrations_total" in helps
    assert 'groupvpn_server_registrations_total{group="g1"} 2.0' in lines
    for line in lines:
        assert line.startswith("#") or line.split("{")[0].split(" ")[0].startswith("groupvpn_")


def test_label_values_are_escaped():
    view = busy_statistics().view([('we"ird\\group\nname', 5)], {}, 100.0, "", {})
    text = render(lambda: server_families(view)).decode()
    assert 'group="we\\"ird\\\\group\\nname"' in text
    assert ("groupvpn_server_members", (("group", 'we"ird\\group\nname'),)) in samples(
        text.encode()
    )


MEMBER_STATISTICS: dict[str, Any] = {
    "engine": {
        "packets-out": 5, "bytes-out": 500, "packets-in": 4, "bytes-in": 400,
        "clear-packets": 3, "clear-bytes": 90, "fragments": 2, "icmp-errors": 1,
        "dropped": {"bad-icv": 7, "replayed": 0}, "refused": {"no-key": 8},
    },
    "seconds": 12,
}  # fmt: skip
MEMBER_KEKS: dict[str, Any] = {
    "security-associations": [
        {"vpn": "gvpn1", "rekeys-received": 3, "heartbeats-received": 9, "acks-sent": 3},
        {"vpn": "gvpn2"},  # no KEK yet: no rekey counters
    ],
    "push-rejections": {"bad-signature": 2},
}


def test_member_metrics_carry_esp_packets_bytes_and_drops_by_reason():
    found = samples(render(lambda: member_families(MEMBER_STATISTICS, MEMBER_KEKS)))
    assert found[("groupvpn_member_esp_packets_total", (("direction", "in"),))] == 4
    assert found[("groupvpn_member_esp_packets_total", (("direction", "out"),))] == 5
    assert found[("groupvpn_member_esp_bytes_total", (("direction", "in"),))] == 400
    assert found[("groupvpn_member_esp_bytes_total", (("direction", "out"),))] == 500
    assert found[("groupvpn_member_esp_drops_total", (("reason", "bad-icv"),))] == 7
    assert found[("groupvpn_member_esp_drops_total", (("reason", "replayed"),))] == 0
    assert found[("groupvpn_member_esp_refused_total", (("reason", "no-key"),))] == 8
    assert found[("groupvpn_member_clear_packets_total", ())] == 3
    assert found[("groupvpn_member_rekeys_received_total", (("vpn", "gvpn1"),))] == 3
    assert ("groupvpn_member_rekeys_received_total", (("vpn", "gvpn2"),)) not in found
    assert found[("groupvpn_member_pushes_dropped_total", (("reason", "bad-signature"),))] == 2
    assert found[("groupvpn_member_statistics_age_seconds", ())] == 12


def test_member_registration_state_is_a_gauge_per_vpn():
    ike = {
        "security-associations": [],
        "registrations": [
            {"vpn": "gvpn1", "state": "registered", "failures": 0},
            {"vpn": "gvpn2", "state": "waiting to retry", "failures": 3},
        ],
    }
    found = samples(render(lambda: member_families({"dataplane": "none"}, None, ike)))
    assert found[("groupvpn_member_registered", (("vpn", "gvpn1"),))] == 1
    assert found[("groupvpn_member_registered", (("vpn", "gvpn2"),))] == 0
    assert found[("groupvpn_member_registration_failures", (("vpn", "gvpn2"),))] == 3


def test_a_member_without_data_plane_has_no_esp_metrics():
    found = samples(render(lambda: member_families({"dataplane": "none"}, MEMBER_KEKS)))
    assert not any(name.startswith("groupvpn_member_esp") for name, _ in found)
    assert found[("groupvpn_member_heartbeats_received_total", (("vpn", "gvpn1"),))] == 9


# -- the HTTP server -----------------------------------------------------------------------


async def exchange(server: MetricsServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:  # closed unanswered, after our request arrived
        return b""
    finally:
        writer.close()


def serving(render_text: Callable[[], bytes], check: Callable[[MetricsServer], Any]) -> None:
    async def main() -> None:
        server = MetricsServer("127.0.0.1", 0, render_text)
        await server.start()
        try:
            await check(server)
        finally:
            await server.close()

    asyncio.run(main())


def split(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *fields = head.decode().split("\r\n")
    headers = dict(field.split(": ", 1) for field in fields)
    return status, headers, body


def test_get_metrics_answers_the_exposition_and_head_only_its_headers():
    async def check(server: MetricsServer) -> None:
        status, headers, body = split(
            await exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert status == "HTTP/1.1 200 OK"
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert body == b"# metrics\n" and headers["Content-Length"] == str(len(body))
        assert headers["Connection"] == "close"
        status, headers, body = split(await exchange(server, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"))
        assert status == "HTTP/1.1 200 OK" and body == b"" and headers["Content-Length"] == "10"

    serving(lambda: b"# metrics\n", check)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"GET /metrics/../etc HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed"),
        (b"GET /metrics\r\n\r\n", "400 Bad Request"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", "400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\n", "400 Bad Request"),  # closed before the blank line
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n", "431 "),
    ],
)
def test_anything_but_get_metrics_gets_an_error_and_the_server_keeps_serving(
    request_bytes: bytes, status: str
):
    async def check(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:80]
        assert b"Content-Type: text/plain; charset=utf-8" in answer
        ok = await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK")

    serving(lambda: b"ok\n", check)


def test_a_silent_client_is_timed_out(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT", 0.2)

    async def check(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout")

    serving(lambda: b"ok\n", check)


def test_connections_beyond_the_limit_are_closed_unanswered(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metrics, "MAX_CONNECTIONS", 2)

    async def check(server: MetricsServer) -> None:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.05)  # both are being served (waiting for their requests)
        assert await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.05)
        ok = await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK")

    serving(lambda: b"ok\n", check)


def test_a_failing_render_closes_that_connection_only(caplog: pytest.LogCaptureFixture):
    calls = []

    def flaky() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return b"ok\n"

    async def check(server: MetricsServer) -> None:
        assert await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        ok = await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.endswith(b"\r\n\r\nok\n")

    serving(flaky, check)
    assert "metrics: answering a request failed" in caplog.text


def test_closing_the_server_does_not_wait_for_a_silent_client():
    async def main() -> None:
        server = MetricsServer("127.0.0.1", 0, lambda: b"ok\n")
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.close(), 1.0)  # not REQUEST_TIMEOUT
        assert await asyncio.wait_for(reader.read(), 1.0) == b""
        writer.close()

    asyncio.run(main())


def test_a_busy_metrics_port_stops_the_daemon_with_a_clear_error():
    async def main() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            daemon = Daemon(DaemonOptions(metrics=("127.0.0.1", port)))
            with pytest.raises(StartupError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
                await daemon.start_metrics(lambda: b"")

    asyncio.run(main())


def test_without_metrics_no_server_is_started():
    daemon = Daemon(DaemonOptions())
    asyncio.run(daemon.start_metrics(lambda: b""))
    assert daemon.metrics is None


@pytest.mark.parametrize("role", ["server", "member"])
def test_a_bad_metrics_option_is_a_usage_error_not_a_traceback(role: str):
    result = CliRunner().invoke(cli, [role, "-c", "x.conf", "--metrics", "localhost:80"])
    assert result.exit_code == 2
    assert "Invalid value for '--metrics': 'localhost:80': 'localhost' is not an IP address" in (
        result.output
    )
    assert "Traceback" not in result.output


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_get_an_http_answer_or_a_close_and_the_server_keeps_serving(
    data: bytes, terminated: bool
):
    async def check(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(data + (b"\r\n\r\n" if terminated else b""))
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 ")
        status = int(answer[9:12])
        assert status in (200, 400, 404, 405, 431)
        ok = await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK")

    serving(lambda: b"ok\n", check)
