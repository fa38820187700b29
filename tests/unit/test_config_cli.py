"""``groupvpn check -c FILE`` through click's test runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from groupvpn.cli.check import check

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["server.conf", "member1.conf", "member2.conf", "colocation.conf"])
def test_valid_configs(name: str) -> None:
    result = CliRunner().invoke(check, ["-c", str(CONFIGS / name)])
    assert result.exit_code == 0, result.output
    assert result.output == "configuration check succeeds\n"


def test_errors_are_printed_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "member.conf").write_text((CONFIGS / "member-errors.conf").read_text())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(check, ["--config", "member.conf"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert lines[:4] == [
        "member.conf:5: [edit security group-vpn member ike proposal p1]",
        "  'lifetime-seconds 90'",
        "    Value 90 is not within range (180..86400)",
        "member.conf:6: syntax error: bogus",
    ]
    assert (
        "    Only one remote address is allowed to be configured per IKE gateway configuration"
        in lines
    )
    assert lines[-1] == "error: configuration check-out failed: (missing mandatory statements)"
    assert "do-not-print-me" not in result.output


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    result = CliRunner().invoke(check, ["-c", str(missing)])
    assert result.exit_code == 1
    assert result.output == (
        f"error: could not read configuration file '{missing}': No such file or directory\n"
    )
    assert "Traceback" not in result.output


def test_directory_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(check, ["-c", str(tmp_path)])
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("error: could not read configuration file")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_bytes(b"set security group-vpn co-location\nset \xff\n")
    result = CliRunner().invoke(check, ["-c", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"{path}:2: configuration file is not valid UTF-8 text"
    )


def test_config_option_is_required() -> None:
    result = CliRunner().invoke(check, [])
    assert result.exit_code == 2
    assert "Missing option '-c' / '--config'" in result.output


def test_registered_in_groupvpn_command() -> None:
    # Imported here: the top-level command also loads the daemons, which other modules
    # provide; this test only cares that `check` is one of its words.
    main = pytest.importorskip("groupvpn.cli.main")
    result = CliRunner().invoke(main.cli, ["check", "-c", str(CONFIGS / "member1.conf")])
    assert result.exit_code == 0, result.output
    assert result.output == "configuration check succeeds\n"
