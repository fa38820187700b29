"""Log lines for the systemd journal when the daemon's stderr is connected to it.

journald stamps every line with the time and the unit's SyslogIdentifier itself,
and reads a ``<N>`` prefix as the line's syslog priority, so under journald each
line is ``<N>message``: `journalctl -p warning` then shows warnings and errors
only, and no time or name is printed twice.  Anywhere else (a terminal, a file,
the tests) the lines keep their own time and ``groupvpn-ROLE[PID]:`` prefix.
"""

from __future__ import annotations

import logging
import os
import sys

#: logging level -> syslog priority (RFC 5424 severities).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))  # fmt: skip
DEBUG_PRIORITY = 7


def priority(level: int) -> int:
    return next((value for at_least, value in _PRIORITIES if level >= at_least), DEBUG_PRIORITY)


class JournalFormatter(logging.Formatter):
    """``<priority>message``; a multi-line message (a traceback) keeps it on every line."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal (``JOURNAL_STREAM`` = its dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))
