"""The kinds of statement a schema is made of (see :mod:`groupvpn.config.schema`).

- :class:`Container` -- ``ike { ... }``: a fixed keyword that opens a level.
- :class:`Named` -- ``proposal NAME { ... }``: a keyword plus a name, one level per name.
  With ``positional`` set, one leaf of the level may be given right after the name, as
  Junos allows for ``address NAME 10.0.0.0/8`` (the ``ip-prefix`` of the address).
- :class:`Leaf` -- ``mode main``: one value; a later line replaces an earlier one.
- :class:`LeafList` -- ``proposals [ a b ]``: ordered values; later lines append.
- :class:`Flag` -- ``co-location``: present or not.
- :class:`Choice` -- ``pre-shared-key ascii-text KEY``: a keyword picks the value's type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from groupvpn.config.values import Keyword, Name, Text, ValueType


@dataclass(frozen=True, slots=True)
class Leaf:
    value: ValueType
    default: object = None


@dataclass(frozen=True, slots=True)
class LeafList:
    value: ValueType
    max_items: int | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    pass


@dataclass(frozen=True, slots=True)
class Choice:
    """``keyword option VALUE``; the stored value is ``(option, parsed VALUE)``."""

    options: Mapping[str, ValueType]

    @property
    def secret(self) -> bool:
        return any(v.secret for v in self.options.values())


@dataclass(frozen=True, slots=True)
class Container:
    children: Mapping[str, Statement]
    mandatory: tuple[str, ...] = ()
    # Groups of statements of which only one may be set; setting one removes the others,
    # as a Junos ``choice`` does.
    exclusive: tuple[frozenset[str], ...] = ()

    def exclusive_with(self, keyword: str) -> frozenset[str]:
        for group in self.exclusive:
            if keyword in group:
                return group - {keyword}
        return frozenset()


@dataclass(frozen=True, slots=True)
class Named:
    name: ValueType
    body: Container = field(default_factory=lambda: Container({}))
    positional: str | None = None
    """A leaf of ``body`` whose value may follow the name without its keyword."""


Statement = Container | Named | Leaf | LeafList | Flag | Choice


# -- shared by the schema modules --------------------------------------------------------


def keywords_of(literal: object) -> Keyword:
    """The keywords of a model ``Literal`` type, so the schema follows the model."""
    return Keyword.of(*(str(w) for w in get_args(literal)))


PROPOSAL_NAME = Name(
    32,
    re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*"),
    "Must be a string beginning with a number or letter and consisting of letters, "
    "numbers, dashes and underscores.",
)
OBJECT_NAME = Name(32)
DESCRIPTION = Leaf(Text(80))
LONG_NAME = Name(63)
"""Zone, address, application and security policy names (Junos allows 63 characters)."""
INTERFACE_NAME = Name(
    63,
    re.compile(r"[a-z][a-z0-9-]*(?:/[0-9]+)*"),
    "Must be an interface name such as ge-0/0/1 or lo0",
)
LOGICAL_INTERFACE_NAME = Name(
    63,
    re.compile(r"[a-z][a-z0-9-]*(?:/[0-9]+)*(?:\.[0-9]+)?"),
    "Must be an interface name such as ge-0/0/1.0 or lo0.0",
)
