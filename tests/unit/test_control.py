"""The control socket: one JSON request per connection, owner-only, clear errors."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from groupvpn.runtime.control import ControlError, ControlServer, call


def _serve_and_call(path: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[object]:
    def members(args: dict[str, Any]) -> object:
        return {"group": args.get("group"), "members": []}

    def broken(args: dict[str, Any]) -> object:
        raise RuntimeError("boom")

    async def main() -> list[object]:
        server = ControlServer(path, {"members": members, "broken": broken})
        await server.start()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        results: list[object] = []
        for command, args in calls:
            try:
                results.append(await asyncio.to_thread(call, path, command, args))
            except ControlError as exc:
                results.append(f"error: {exc}")
        await server.close()
        assert not path.exists()
        return results

    return asyncio.run(main())


def test_commands_errors_and_cleanup(tmp_path: Path):
    path = tmp_path / "run" / "server.sock"
    results = _serve_and_call(path, [("members", {"group": "g1"}), ("nope", {}), ("broken", {})])
    assert results == [
        {"group": "g1", "members": []},
        "error: unknown command 'nope'",
        "error: internal error running broken",
    ]


def test_a_stale_socket_is_replaced_and_a_missing_daemon_is_explained(tmp_path: Path):
    import socket

    path = tmp_path / "member.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves
    assert _serve_and_call(path, [("members", {})]) == [{"group": None, "members": []}]
    with pytest.raises(ControlError, match="is the daemon running"):
        call(path, "members")
