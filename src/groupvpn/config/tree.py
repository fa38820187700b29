"""The configuration as parsed: a generic tree shaped by the schema, with line numbers.

Commit checks read this tree (they need line numbers and must work on configurations that
cannot become a model); the loader turns a checked tree into model objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from groupvpn.config.diagnostics import quote_word
from groupvpn.config.schema import ROOT, Choice, Container, Leaf


@dataclass(slots=True)
class Setting:
    """A value set by one line.  ``shown`` is how a diagnostic quotes it (never a secret)."""

    value: object
    line: int
    shown: str


@dataclass(slots=True)
class Node:
    """One level of the configuration (a container, or one named object)."""

    schema: Container = field(repr=False)
    path: tuple[str, ...]
    line: int
    """The first line that created this level."""
    name: str | None = None
    """The object's name for a named level (``p1`` of ``proposal p1``)."""
    leaves: dict[str, Setting] = field(default_factory=dict)
    lists: dict[str, list[Setting]] = field(default_factory=dict)
    containers: dict[str, Node] = field(default_factory=dict)
    named: dict[str, dict[str, Node]] = field(default_factory=dict)
    #: Statements a ``deactivate`` line made inactive here, by keyword (``keyword
    #: name`` for a named object), with that line: Junos keeps them in the file but
    #: commits as if they were not there.  A few mean "off" (``config.build_groups``).
    inactive: dict[str, int] = field(default_factory=dict)
    #: The values of each leaf-list, to keep each value once without a scan (a group
    #: with 8,000 `ike-gateway` lines would otherwise take seconds to load).
    list_values: dict[str, set[object]] = field(default_factory=dict, repr=False)

    def container(self, keyword: str) -> Node | None:
        return self.containers.get(keyword)

    def objects(self, keyword: str) -> dict[str, Node]:
        """The named objects under ``keyword`` (``proposal``), in file order."""
        return self.named.get(keyword, {})

    def has(self, keyword: str) -> bool:
        return (
            keyword in self.leaves
            or keyword in self.lists
            or keyword in self.containers
            or keyword in self.named
        )

    def value(self, keyword: str) -> object:
        """A leaf's value, or its schema default (None if it has none)."""
        setting = self.leaves.get(keyword)
        if setting is not None:
            return setting.value
        statement = self.schema.children[keyword]
        return statement.default if isinstance(statement, Leaf) else None

    def choice(self, keyword: str) -> tuple[str, object] | None:
        setting = self.leaves.get(keyword)
        if setting is None:
            return None
        assert isinstance(self.schema.children[keyword], Choice)
        pair = setting.value
        assert isinstance(pair, tuple) and len(pair) == 2
        return str(pair[0]), pair[1]

    def values(self, keyword: str) -> list[object]:
        return [s.value for s in self.lists.get(keyword, [])]

    def line_of(self, keyword: str) -> int:
        """The line that set ``keyword``, or this level's own line if it is not set."""
        if keyword in self.leaves:
            return self.leaves[keyword].line
        if self.lists.get(keyword):
            return self.lists[keyword][0].line
        return self.line

    @property
    def statement(self) -> str:
        """How Junos names this level in its parent: ``proposal p1`` or ``ike``."""
        if self.name is not None:
            return f"{self.path[-2]} {quote_word(self.name)}"
        return self.path[-1] if self.path else ""


def new_root() -> Node:
    return Node(ROOT, (), 0)
