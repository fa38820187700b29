"""Configuration diagnostics, worded and laid out like Junos ``load`` and ``commit`` errors.

Three layouts exist, all derived from one :class:`Diagnostic`:

``load`` syntax errors (a ``headline`` is set)::

    member.conf:7: syntax error: bogus
      [edit security group-vpn member ike proposal p1]
        'bogus'
          syntax error.

value and commit errors (no headline)::

    member.conf:9: [edit security group-vpn server ike proposal p1]
      'lifetime-seconds 90'
        Value 90 is not within range (180..86400)

and plain one-line errors (no edit path), e.g. an unreadable file.  The ``source:line:``
prefix is left out when a diagnostic has no line (a check about the whole configuration).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

CHECKOUT_FAILED = "error: configuration check-out failed"
# Junos adds this suffix when the failure includes missing mandatory statements.
MISSING_MANDATORY_SUFFIX = ": (missing mandatory statements)"
MISSING_MANDATORY = "Missing mandatory statement: '{keyword}'"

# Words Junos prints bare in an edit path or statement; anything else gets double quotes.
_BARE_WORD = re.compile(r'[^\s"\'\[\]{};#\\]+')


class Phase(Enum):
    """When a problem was found: reading the file, reading lines (load), checking (commit)."""

    FILE = "file"
    LOAD = "load"
    COMMIT = "commit"


def quote_word(word: str) -> str:
    """A word as Junos shows it: bare if it can be, else double-quoted with escapes."""
    if word and _BARE_WORD.fullmatch(word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def edit_path(path: Sequence[str]) -> str:
    """``("security", "group-vpn")`` -> ``[edit security group-vpn]``."""
    if not path:
        return "[edit]"
    return "[edit " + " ".join(quote_word(w) for w in path) + "]"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a configuration.

    ``path`` is the Junos edit path (without ``edit``), ``statement`` the statement shown
    in quotes below it, ``message`` the explanation.  ``path`` is None for plain one-line
    errors.  ``statement`` and ``message`` never carry a secret's value.
    """

    source: str
    line: int | None
    message: str
    path: tuple[str, ...] | None = None
    statement: str | None = None
    headline: str | None = None
    phase: Phase = Phase.COMMIT
    missing_mandatory: bool = False

    def format(self) -> str:
        """The Junos-style text of this diagnostic (no trailing newline)."""
        prefix = f"{self.source}:{self.line}: " if self.line is not None else ""
        if self.path is None:
            return prefix + (f"{self.headline}: {self.message}" if self.headline else self.message)
        lines: list[str] = []
        if self.headline is not None:
            lines.append(prefix + self.headline)
            indent = "  "
            lines.append(indent + edit_path(self.path))
        else:
            indent = ""
            lines.append(prefix + edit_path(self.path))
        if self.statement is not None:
            indent += "  "
            lines.append(f"{indent}'{self.statement}'")
        lines.append(f"{indent}  {self.message}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def format_report(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics, then the Junos closing line (not after a file that could not be
    read: nothing was checked out)."""
    diags = list(diagnostics)
    if diags and all(d.phase is Phase.FILE for d in diags):
        return "\n".join(d.format() for d in diags)
    closing = CHECKOUT_FAILED
    if any(d.missing_mandatory for d in diags):
        closing += MISSING_MANDATORY_SUFFIX
    return "\n".join([*(d.format() for d in diags), closing])


class ConfigError(Exception):
    """A configuration could not be loaded; ``diagnostics`` lists every problem found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(format_report(self.diagnostics))

    def __str__(self) -> str:
        return format_report(self.diagnostics)
