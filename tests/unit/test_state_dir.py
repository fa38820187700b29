"""The server's state directory keeps the signing key private, durable and never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from groupvpn.runtime.state import SIGNING_KEY_FILE, StateDirectory, StateError
from groupvpn.server.signing import SigningKey


def test_first_start_generates_a_private_key_and_later_starts_load_it(tmp_path: Path) -> None:
    state = StateDirectory(tmp_path / "state")
    state.prepare()
    key, generated = state.signing_key()
    assert generated
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    key_file = tmp_path / "state" / SIGNING_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    again, generated_again = StateDirectory(tmp_path / "state").signing_key()
    assert not generated_again
    assert again.fingerprint == key.fingerprint
    assert not list((tmp_path / "state").glob("*.new"))


def test_a_key_file_others_can_read_is_refused_not_used(tmp_path: Path) -> None:
    state = StateDirectory(tmp_path)
    key_file = tmp_path / SIGNING_KEY_FILE
    key_file.write_bytes(SigningKey.generate(2048).private_pem())
    key_file.chmod(0o644)
    with pytest.raises(StateError, match=r"readable by other users .*chmod 600"):
        state.signing_key()


def test_a_directory_others_can_enter_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(StateError, match=r"accessible by other users .*chmod 700"):
        StateDirectory(directory).prepare()


def test_a_file_where_the_directory_should_be_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(StateError):
        StateDirectory(tmp_path / "state").prepare()


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_a_corrupt_key_is_an_error_with_a_recovery_path_and_stays(
    tmp_path: Path, content: bytes
) -> None:
    key_file = tmp_path / SIGNING_KEY_FILE
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    with pytest.raises(StateError, match="move it away and start again"):
        StateDirectory(tmp_path).signing_key()
    assert key_file.read_bytes() == content


def test_a_half_written_file_from_a_crash_is_discarded(tmp_path: Path) -> None:
    (tmp_path / (SIGNING_KEY_FILE + ".new")).write_bytes(b"half a key")
    key, generated = StateDirectory(tmp_path).signing_key()
    assert generated and key.bits == 2048
    assert not (tmp_path / (SIGNING_KEY_FILE + ".new")).exists()


def test_loading_without_generating_reports_a_missing_key(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no signing key"):
        StateDirectory(tmp_path).signing_key(generate=False)
