"""Under journald, each log line is ``<priority>message``; elsewhere it is left alone."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from groupvpn.runtime.journal import JournalFormatter, priority, stderr_is_journal


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("groupvpn", level, __file__, 1, message, None, None)


def test_levels_become_syslog_priorities():
    assert [priority(level) for level in (50, 40, 30, 20, 10, 5)] == [2, 3, 4, 6, 7, 7]


def test_every_line_of_a_message_carries_its_priority():
    formatter = JournalFormatter("%(message)s")
    assert formatter.format(record(logging.WARNING, "event=member-removed x")) == (
        "<4>event=member-removed x"
    )
    assert formatter.format(record(logging.ERROR, "internal error\nTraceback")) == (
        "<3>internal error\n<3>Traceback"
    )


def test_stderr_is_the_journal_only_when_journal_stream_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with open(tmp_path / "stderr", "w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        status = os.fstat(stream.fileno())
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert not stderr_is_journal()
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        assert stderr_is_journal()
        # Inherited by a child whose stderr went elsewhere: not the journal.
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino + 1}")
        assert not stderr_is_journal()
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not stderr_is_journal()
