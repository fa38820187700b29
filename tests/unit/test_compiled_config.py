"""The key server's compiled configuration: a cache of the checked setup in the state dir."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from groupvpn.runtime import compiled_config, server_setup
from groupvpn.runtime.compiled_config import COMPILED_FILE, load_compiled_server_setup
from groupvpn.runtime.server_setup import SetupError, load_server_setup

SPEC_SERVER = Path(__file__).resolve().parent.parent / "configs" / "spec" / "server.conf"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.conf"
    path.write_text(SPEC_SERVER.read_text())
    return path


def _accept_all(setup: server_setup.ServerSetup) -> None:
    """A start check that refuses nothing."""


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every time the configuration text is parsed and checked."""
    calls: list[str] = []
    real = server_setup.server_setup_from_text

    def counting(text: str, source: str) -> server_setup.ServerSetup:
        calls.append(source)
        return real(text, source)

    monkeypatch.setattr(compiled_config, "server_setup_from_text", counting)
    return calls


def test_an_unchanged_configuration_is_not_parsed_again(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    parses = _parses(monkeypatch)
    state = tmp_path / "state"
    first = load_compiled_server_setup(config, state, _accept_all)
    assert parses == [str(config)]
    mode = stat.S_IMODE(os.stat(state / COMPILED_FILE).st_mode)
    assert mode == 0o600  # it holds the pre-shared keys
    again = load_compiled_server_setup(config, state, _accept_all)
    assert parses == [str(config)]  # from the compiled copy
    assert again == first == load_server_setup(config)


def test_a_changed_configuration_is_parsed_and_checked_again(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    parses = _parses(monkeypatch)
    state = tmp_path / "state"
    load_compiled_server_setup(config, state, _accept_all)
    config.write_text(config.read_text().replace("group-id 1", "group-id 7"))
    changed = load_compiled_server_setup(config, state, _accept_all)
    assert len(parses) == 2 and [g.group_id for g in changed.groups] == [7]
    # An error is reported as at any start, never hidden by the old compiled copy.
    config.write_text(config.read_text() + "set security group-vpn server group g1 bogus 1\n")
    with pytest.raises(SetupError, match="syntax error"):
        load_compiled_server_setup(config, state, _accept_all)


def test_a_damaged_compiled_copy_is_replaced(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    state = tmp_path / "state"
    load_compiled_server_setup(config, state, _accept_all)
    damaged = bytearray((state / COMPILED_FILE).read_bytes())
    damaged[40:60] = b"\xff" * 20  # the digest still matches, the pickle does not
    (state / COMPILED_FILE).write_bytes(bytes(damaged))
    parses = _parses(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="groupvpn"):
        setup = load_compiled_server_setup(config, state, _accept_all)
    assert parses == [str(config)] and setup == load_server_setup(config)
    assert "compiled configuration" in caplog.text and "unusable" in caplog.text
    assert load_compiled_server_setup(config, state, _accept_all) == setup  # and it was rewritten


def test_a_compiled_copy_others_can_read_is_not_used(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    state = tmp_path / "state"
    load_compiled_server_setup(config, state, _accept_all)
    (state / COMPILED_FILE).chmod(0o644)
    parses = _parses(monkeypatch)
    load_compiled_server_setup(config, state, _accept_all)
    assert parses == [str(config)]


def test_a_refused_start_keeps_nothing_and_a_cached_setup_is_checked_too(
    config: Path, tmp_path: Path
):
    state = tmp_path / "state"

    def refuse(setup: server_setup.ServerSetup) -> None:
        raise SetupError("cannot start: refused by the command line")

    with pytest.raises(SetupError, match="refused by the command line"):
        load_compiled_server_setup(config, state, refuse)
    assert not state.exists()  # a refused start leaves no trace
    load_compiled_server_setup(config, state, _accept_all)
    assert (state / COMPILED_FILE).exists()
    with pytest.raises(SetupError, match="refused by the command line"):
        load_compiled_server_setup(config, state, refuse)  # the compiled copy is checked


def test_a_state_directory_others_can_read_is_left_to_the_daemon_to_refuse(
    config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The daemon stops on such a directory with a way out; no second message about the
    compiled copy before it, and nothing is written there."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with caplog.at_level(logging.DEBUG, logger="groupvpn"):
        setup = load_compiled_server_setup(config, state, _accept_all)
    assert setup == load_server_setup(config)
    assert caplog.text == "" and list(state.iterdir()) == []
