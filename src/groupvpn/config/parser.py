"""Apply ``set`` lines to a configuration tree, walking the schema keyword by keyword.

A line is all or nothing, as in Junos ``load set``: levels it would create are only
attached once the whole line is accepted, so a rejected line leaves no trace except its
diagnostic.  Every line is tried, so one run reports every bad line.

``deactivate STATEMENT`` (as ``show | display set`` prints it after the ``set`` lines)
makes a statement set before it inactive: it is taken out of the tree, so the commit
checks and the daemons see the configuration without it, and noted in its parent's
``Node.inactive``.  A statement that is not set is an error, as a typo would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from groupvpn.config.diagnostics import Diagnostic, Phase, quote_word
from groupvpn.config.schema import ROOT
from groupvpn.config.statements import Choice, Container, Flag, Leaf, LeafList, Named
from groupvpn.config.tokenizer import Token, TokenizeError, split_lines, tokenize_line
from groupvpn.config.tree import Node, Setting
from groupvpn.config.values import ValueProblem, ValueType

_REDACTED = "<secret>"


@dataclass(slots=True)
class ParsedConfig:
    """The tree built from the accepted lines, and the problems of the rejected ones."""

    root: Node
    source: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # (path..., keyword) of statements set by a rejected line: the checks must not report
    # them again as missing.
    failed: set[tuple[str, ...]] = field(default_factory=set)


class _Rejected(Exception):
    """Ends the walk of one line; carries its diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def parse(text: str, source: str) -> ParsedConfig:
    result = ParsedConfig(Node(ROOT, (), 0), source)
    for number, raw in enumerate(split_lines(text), start=1):
        try:
            tokens = tokenize_line(raw, number)
        except TokenizeError as exc:
            result.diagnostics.append(
                Diagnostic(source, number, exc.message, headline="syntax error", phase=Phase.LOAD)
            )
            continue
        if tokens:
            _LineWalker(result, tokens, number).run()
    return result


class _LineWalker:
    """Walks one line's tokens down the schema and applies the statement at the end."""

    def __init__(self, result: ParsedConfig, tokens: tuple[Token, ...], number: int) -> None:
        self.result = result
        self.tokens = tokens
        self.number = number
        self.node = result.root
        # Levels this line creates, attached to their parents only if the line is accepted.
        self.attach: list[tuple[Node, str, Node]] = []
        # Levels this line enters that exclude others (``then permit`` drops ``then
        # deny``), applied only if the line is accepted.
        self.chosen: list[tuple[Node, str]] = []

    # -- diagnostics ----------------------------------------------------------------------

    def _diag(self, statement: str | None, message: str, headline: str | None) -> _Rejected:
        return _Rejected(
            Diagnostic(
                self.result.source,
                self.number,
                message,
                path=self.node.path,
                statement=statement,
                headline=headline,
                phase=Phase.LOAD,
            )
        )

    def _syntax(self, token: Token, secret: bool = False) -> _Rejected:
        if secret:
            # Whatever follows a key's keyword may be part of the key: never echo it.
            return self._diag(None, "syntax error.", "syntax error")
        word = token.text if token.is_open or token.is_close else quote_word(token.text)
        return self._diag(word, "syntax error.", f"syntax error: {word}")

    def _missing(self, statement: str) -> _Rejected:
        return self._diag(statement, "missing argument.", None)

    def _bad_value(self, statement: str, token: Token, problem: ValueProblem) -> _Rejected:
        headline = f"syntax error: {quote_word(token.text)}" if problem.syntax else None
        return self._diag(statement, problem.message, headline)

    # -- walking --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._walk()
        except _Rejected as rejected:
            self.result.diagnostics.append(rejected.diagnostic)
            return
        for parent, keyword, child in self.attach:
            if child.name is None:
                parent.containers[keyword] = child
            else:
                parent.named.setdefault(keyword, {})[child.name] = child
        for parent, keyword in self.chosen:
            _clear_exclusive(parent, keyword)

    def _walk(self) -> None:
        first = self.tokens[0]
        if first.text == "deactivate":
            self._deactivate()
            return
        if first.text != "set":
            word = quote_word(first.text)
            raise self._diag(
                word, "only 'set' and 'deactivate' statements are supported.",
                f"syntax error: {word}",
            )  # fmt: skip
        if len(self.tokens) == 1:
            raise self._missing("set")
        schema: Container = ROOT
        i = 1
        while i < len(self.tokens):
            token = self.tokens[i]
            statement = schema.children.get(token.text)
            if statement is None or token.is_open or token.is_close:
                raise self._syntax(token)
            keyword = token.text
            rest = self.tokens[i + 1 :]
            if isinstance(statement, Container):
                if schema.exclusive_with(keyword):
                    self.chosen.append((self.node, keyword))
                self._descend(keyword, statement, None)
                schema = statement
                i += 1
            elif isinstance(statement, Named):
                self._descend(keyword, statement.body, self._name(keyword, statement, rest))
                schema = statement.body
                i += 2
                positional = statement.positional
                if (
                    positional is not None
                    and i < len(self.tokens)
                    and (self.tokens[i].text not in schema.children or self.tokens[i].quoted)
                ):
                    self._set_positional(positional, schema, self.tokens[i:])
                    return
            else:
                self._set(keyword, statement, rest)
                return

    def _deactivate(self) -> None:
        """``deactivate PATH``: the statement PATH names, which must be set, goes inactive."""
        if len(self.tokens) == 1:
            raise self._missing("deactivate")
        schema: Container = ROOT
        i = 1
        while i < len(self.tokens):
            token = self.tokens[i]
            statement = schema.children.get(token.text)
            if statement is None or token.is_open or token.is_close:
                raise self._syntax(token)
            keyword, last = token.text, i == len(self.tokens) - 1
            node = self.node
            if isinstance(statement, Container):
                child = node.containers.get(keyword)
                if child is None:
                    raise self._diag(keyword, "statement not found", "warning")
                if last:
                    del node.containers[keyword]
                    node.inactive[keyword] = self.number
                    return
                self.node, schema, i = child, statement, i + 1
            elif isinstance(statement, Named):
                if last:
                    raise self._missing(keyword)
                name = self.tokens[i + 1].text
                objects = node.named.get(keyword, {})
                if name not in objects:
                    raise self._diag(f"{keyword} {quote_word(name)}", "statement not found",
                                     "warning")  # fmt: skip
                if i + 1 == len(self.tokens) - 1:
                    del objects[name]
                    node.inactive[f"{keyword} {name}"] = self.number
                    return
                self.node, schema, i = objects[name], statement.body, i + 2
            else:
                if not last:
                    raise self._syntax(self.tokens[i + 1])
                if keyword in node.leaves:
                    del node.leaves[keyword]
                elif keyword in node.lists:
                    del node.lists[keyword]
                    node.list_values.pop(keyword, None)
                else:
                    raise self._diag(keyword, "statement not found", "warning")
                node.inactive[keyword] = self.number
                return

    def _descend(self, keyword: str, schema: Container, name: str | None) -> None:
        parent = self.node
        if name is None:
            child = parent.containers.get(keyword)
        else:
            child = parent.named.get(keyword, {}).get(name)
        if child is None:
            path = (*parent.path, keyword) if name is None else (*parent.path, keyword, name)
            child = Node(schema, path, self.number, name)
            self.attach.append((parent, keyword, child))
        self.node = child

    def _name(self, keyword: str, statement: Named, rest: tuple[Token, ...]) -> str:
        if not rest:
            raise self._missing(keyword)
        token = rest[0]
        if token.is_open or token.is_close:
            raise self._syntax(token)
        try:
            statement.name.parse(token.text)
        except ValueProblem as problem:
            raise self._bad_value(f"{keyword} {quote_word(token.text)}", token, problem) from None
        return token.text

    def _parse_value(
        self, keyword: str, statement: str, value_type: ValueType, token: Token
    ) -> Setting:
        """Parse ``token`` for ``keyword``; ``statement`` is the text shown before the value."""
        if token.is_open or token.is_close:
            raise self._syntax(token, value_type.secret)
        shown = _REDACTED if value_type.secret else quote_word(token.text)
        label = f"{statement} {shown}" if statement else shown
        try:
            value = value_type.parse(token.text)
        except ValueProblem as problem:
            self.result.failed.add((*self.node.path, keyword))
            if value_type.secret:
                raise self._diag(statement, problem.message, None) from None
            raise self._bad_value(label, token, problem) from None
        return Setting(value, self.number, label)

    def _set_positional(self, keyword: str, schema: Container, rest: tuple[Token, ...]) -> None:
        """``address NAME VALUE``: the value of leaf ``keyword`` without its keyword."""
        statement = schema.children[keyword]
        assert isinstance(statement, Leaf)
        if rest[0].is_open or rest[0].is_close:
            raise self._syntax(rest[0])
        if len(rest) > 1:
            raise self._syntax(rest[1])
        self.node.leaves[keyword] = self._parse_value(keyword, "", statement.value, rest[0])

    def _set(
        self, keyword: str, statement: Leaf | LeafList | Flag | Choice, rest: tuple[Token, ...]
    ) -> None:
        node = self.node
        if isinstance(statement, Flag):
            if rest:
                raise self._syntax(rest[0])
            _clear_exclusive(node, keyword)
            node.leaves[keyword] = Setting(True, self.number, keyword)
            return
        if not rest:
            raise self._missing(keyword)
        if isinstance(statement, Leaf):
            if rest[0].is_open or rest[0].is_close:
                raise self._syntax(rest[0], statement.value.secret)
            if len(rest) > 1:
                raise self._syntax(rest[1], statement.value.secret)
            setting = self._parse_value(keyword, keyword, statement.value, rest[0])
            _clear_exclusive(node, keyword)
            node.leaves[keyword] = setting
        elif isinstance(statement, LeafList):
            settings = [
                self._parse_value(keyword, keyword, statement.value, t) for t in self._list(rest)
            ]
            _clear_exclusive(node, keyword)
            current = node.lists.setdefault(keyword, [])
            seen = node.list_values.setdefault(keyword, set())
            for setting in settings:
                # A leaf-list holds each value once, in the order first set (as Junos).
                if setting.value not in seen:
                    seen.add(setting.value)
                    current.append(setting)
        else:
            option_token = rest[0]
            option = statement.options.get(option_token.text)
            if option is None:
                if statement.secret:
                    expected = " ".join(statement.options)
                    raise self._diag(
                        keyword, f"syntax error, expecting one of: {expected}", "syntax error"
                    )
                raise self._syntax(option_token)
            label = f"{keyword} {option_token.text}"
            if len(rest) < 2:
                raise self._missing(label)
            if len(rest) > 2:
                raise self._syntax(rest[2], option.secret)
            setting = self._parse_value(keyword, label, option, rest[1])
            setting.value = (option_token.text, setting.value)
            node.leaves[keyword] = setting

    def _list(self, rest: tuple[Token, ...]) -> tuple[Token, ...]:
        """The values of ``X`` or ``[ X Y ... ]``; nothing may follow."""
        if not rest[0].is_open:
            if len(rest) > 1:
                raise self._syntax(rest[1])
            return rest[:1]
        for end, token in enumerate(rest[1:], start=1):
            if token.is_close:
                if end == 1:
                    raise self._diag("[ ]", "missing argument.", None)
                if end + 1 < len(rest):
                    raise self._syntax(rest[end + 1])
                return rest[1:end]
            if token.is_open:
                raise self._syntax(token)
        raise self._diag(None, "missing ']'.", "syntax error")


def _clear_exclusive(node: Node, keyword: str) -> None:
    """Setting ``keyword`` removes the statements of its choice group (a Junos choice)."""
    for other in node.schema.exclusive_with(keyword):
        node.leaves.pop(other, None)
        node.lists.pop(other, None)
        node.list_values.pop(other, None)
        node.containers.pop(other, None)
        node.named.pop(other, None)
