"""Pre-shared keys never reach a diagnostic, an exception text or a repr."""

from __future__ import annotations

import pickle

import pytest

from groupvpn.config import ConfigError, Secret, check_config, load_config

P = "set security group-vpn member ike policy pol1"
KEY = "Zq7-KEYMATERIAL"


@pytest.mark.parametrize(
    "line",
    [
        f"{P} pre-shared-key {KEY}",
        f'{P} pre-shared-key "{KEY}"',
        f"{P} pre-shared-key ascii-text {KEY} {KEY}",
        f"{P} pre-shared-key ascii-text [ {KEY} ]",
        f"{P} pre-shared-key ascii-text {KEY} ]",
        f"{P} pre-shared-key ascii-text $9${KEY}",
        f'{P} pre-shared-key ascii-text "{KEY * 20}"',
        f"{P} pre-shared-key hexadecimal {KEY}",
        f"{P} pre-shared-key hexadecimal abc{KEY}",
        f"{P} pre-shared-key hexadecimal 0x{KEY}",
        f"{P} pre-shared-key hexadecimal {'ab' * 256}",
    ],
)
def test_bad_key_lines_never_echo_the_key(line: str) -> None:
    found = check_config(line + "\n", "member.conf")
    assert found and found[0].line == 1
    for d in found:
        assert KEY not in d.format()
        assert KEY not in repr(d)
        assert "ab" * 20 not in d.format()
    with pytest.raises(ConfigError) as info:
        load_config(line)
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_bad_key_messages() -> None:
    cases = {
        f"{P} pre-shared-key {KEY}": (
            "syntax error",
            "pre-shared-key",
            "syntax error, expecting one of: ascii-text hexadecimal",
        ),
        f"{P} pre-shared-key hexadecimal abc": (
            None,
            "pre-shared-key hexadecimal",
            "Pre-shared key must be an even number of hexadecimal digits (at most 510)",
        ),
        f'{P} pre-shared-key ascii-text ""': (
            None,
            "pre-shared-key ascii-text",
            "Pre-shared key must be 1 to 255 characters long",
        ),
        f"{P} pre-shared-key ascii-text $9$abc": (
            None,
            "pre-shared-key ascii-text",
            "Junos $9$-encrypted keys are not supported; give the key in plain text",
        ),
        f"{P} pre-shared-key ascii-text a b": ("syntax error", None, "syntax error."),
    }
    for line, (headline, statement, message) in cases.items():
        (d,) = check_config(line)
        assert (d.headline, d.statement, d.message) == (headline, statement, message), line


def test_commit_errors_on_a_policy_with_a_key() -> None:
    text = f'{P} pre-shared-key ascii-text "{KEY}"\n{P} proposals nope\n'
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert "Referenced proposal is not defined" in str(info.value)
    assert KEY not in str(info.value)


def test_secret_in_model_and_containers() -> None:
    s = Secret(KEY.encode())
    assert KEY not in repr([s]) and KEY not in repr({"k": s}) and KEY not in f"{s!s} {s!r}"
    assert len(s) == len(KEY)
    assert pickle.loads(pickle.dumps(s)) == s
    assert hash(s) == hash(Secret(KEY.encode()))
