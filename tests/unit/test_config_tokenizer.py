"""Splitting lines into tokens: quotes, escapes, brackets, comments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.config.tokenizer import Token, TokenizeError, split_lines, tokenize_line


def words(text: str) -> list[str]:
    return [t.text for t in tokenize_line(text, 1)]


def test_plain_words_and_spacing() -> None:
    assert words("  set  security\tgroup-vpn  ") == ["set", "security", "group-vpn"]


def test_quoted_strings_and_escapes() -> None:
    assert words(r'a "b c" "x\"y" "back\\slash" "\q"') == ["a", "b c", 'x"y', "back\\slash", "q"]
    assert words('""') == [""]


def test_quoted_token_is_marked() -> None:
    (token,) = tokenize_line('"["', 1)
    assert token == Token("[", 1, quoted=True)
    assert not token.is_open


def test_brackets_are_tokens_with_or_without_spaces() -> None:
    assert words("p [ a b ]") == ["p", "[", "a", "b", "]"]
    assert words("p [a b]") == ["p", "[", "a", "b", "]"]
    opening = tokenize_line("p [a]", 1)[1]
    assert opening.is_open and opening.column == 3


def test_comments() -> None:
    assert words("# whole line") == []
    assert words("set a # trailing") == ["set", "a"]
    assert words("set a#b") == ["set", "a#b"]
    assert words('set "# not a comment" x') == ["set", "# not a comment", "x"]


@pytest.mark.parametrize("text", ['set "abc', 'set "abc\\"', 'set "abc\\'])
def test_unterminated_quote(text: str) -> None:
    with pytest.raises(TokenizeError) as info:
        tokenize_line(text, 7)
    assert info.value.number == 7 and info.value.column == 5
    assert info.value.message == "unterminated quoted string"


def test_line_numbers_follow_newlines_only() -> None:
    assert list(split_lines("a\r\nb\x0cc\u2028d\ne")) == ["a", "b\x0cc\u2028d", "e"]


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("ab-1. \t\x0b\x0c\u00a0\u2003/:")), max_size=40))
def test_the_plain_line_shortcut_gives_what_the_expression_gives(text: str) -> None:
    """Lines without quotes, brackets or '#' skip the regular expression: same tokens."""
    from groupvpn.config import tokenizer

    expected = tuple(
        Token(m.group(), m.start() + 1)
        for m in tokenizer._TOKEN.finditer(text)
        if m.lastgroup == "word"
    )
    assert tokenize_line(text, 1) == expected
