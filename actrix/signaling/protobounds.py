"""Bounds on untrusted ``.proto`` text, checked before anything parses it.

A registered ServiceSpec carries ``.proto`` text that route negotiation hands to
protoc (signaling.md §8.4). protoc's parser recurses once per nesting level of
an aggregate option value or a group, so text nested a few thousand levels deep
exhausts its stack, and large inputs cost memory that is never given back. This
module refuses such text first: total size, files per spec, tokens and
declarations per spec, and bracket nesting depth.

It is a bounds check, not a parser. A small lexer follows the protobuf
tokenizer's rules for what hides brackets: ``//`` and ``/* */`` comments and
single- or double-quoted strings with backslash escapes (a string also ends at
a newline, where protoc reports an error anyway). Every other ``{ ( [ <``
opens a level and every ``} ) ] >`` closes one; mismatched pairs are protoc's
business, the depth is all that matters here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = [
    "MAX_DECLARATIONS",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_NESTING_DEPTH",
    "MAX_SPEC_BYTES",
    "MAX_TOKENS",
    "ProtoBoundsError",
    "check_file",
    "check_files",
]

# A real service's merged package text runs to tens of KB; descriptor.proto,
# mostly comments, is 55 KB.
MAX_FILE_BYTES: Final = 256 * 1024
MAX_SPEC_BYTES: Final = 1024 * 1024
MAX_FILES: Final = 64
# Per spec, summed over its files. 100 000 tokens lex in well under 100 ms.
MAX_TOKENS: Final = 100_000
# Statements and blocks: every declaration ends in ';' or opens a '{'.
MAX_DECLARATIONS: Final = 20_000
# protoc itself refuses messages nested deeper than 32; aggregate option values
# and map<> add a few levels more. The crash needs thousands.
MAX_NESTING_DEPTH: Final = 64

_OPEN: Final = frozenset("{([<")
_CLOSE: Final = frozenset("})]>")
_DECLARATION: Final = frozenset(";{")

# One alternative per token class; whitespace and comments are matched so they
# can be skipped. An unterminated block comment runs to the end of the text
# (protoc rejects it); an unterminated string stops at the end of its line.
_TOKEN_RE: Final = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)
    | (?P<word>[A-Za-z0-9_.]+)
    | (?P<symbol>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class ProtoBoundsError(ValueError):
    """Proto text exceeds one of the bounds; the message names the bound."""


def check_file(content: str, label: str = "proto") -> tuple[int, int]:
    """Check one file's size and nesting depth; return its (tokens, declarations).

    Scanning stops as soon as a bound is exceeded, so the cost of a check is
    bounded by the limits, not by the input.

    Raises:
        ProtoBoundsError: if the text is larger than ``MAX_FILE_BYTES`` encoded,
            nests deeper than ``MAX_NESTING_DEPTH``, or holds more than
            ``MAX_TOKENS`` tokens or ``MAX_DECLARATIONS`` declarations.
    """
    return _scan(content, label, MAX_TOKENS, MAX_DECLARATIONS)


def check_files(contents: Sequence[str], label: str = "spec") -> None:
    """Check every file of one spec, and the spec's totals.

    Raises:
        ProtoBoundsError: if a file fails ``check_file``, or the spec has more
            than ``MAX_FILES`` files, ``MAX_SPEC_BYTES`` bytes, ``MAX_TOKENS``
            tokens or ``MAX_DECLARATIONS`` declarations in all.
    """
    if len(contents) > MAX_FILES:
        raise ProtoBoundsError(f"{label}: more than {MAX_FILES} files")
    total_bytes = 0
    for content in contents:
        # Every character is at least one encoded byte: skip encoding huge text.
        total_bytes += len(content) if len(content) > MAX_SPEC_BYTES else _size(content)
        if total_bytes > MAX_SPEC_BYTES:
            raise ProtoBoundsError(f"{label}: more than {MAX_SPEC_BYTES} bytes")
    tokens_left, declarations_left = MAX_TOKENS, MAX_DECLARATIONS
    for index, content in enumerate(contents):
        tokens, declarations = _scan(
            content, f"{label} file {index}", tokens_left, declarations_left
        )
        tokens_left -= tokens
        declarations_left -= declarations


def _size(content: str) -> int:
    return len(content.encode("utf-8", errors="surrogatepass"))


def _scan(
    content: str, label: str, max_tokens: int, max_declarations: int
) -> tuple[int, int]:
    if len(content) > MAX_FILE_BYTES or _size(content) > MAX_FILE_BYTES:
        raise ProtoBoundsError(f"{label}: more than {MAX_FILE_BYTES} bytes")
    depth = tokens = declarations = 0
    for match in _TOKEN_RE.finditer(content):
        kind = match.lastgroup
        if kind == "space" or kind == "comment":
            continue
        tokens += 1
        if tokens > max_tokens:
            raise ProtoBoundsError(f"{label}: more than {MAX_TOKENS} tokens")
        if kind != "symbol":
            continue
        char = match.group()
        if char in _OPEN:
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                raise ProtoBoundsError(
                    f"{label}: nesting deeper than {MAX_NESTING_DEPTH}"
                )
        elif char in _CLOSE:
            depth = max(depth - 1, 0)
        if char in _DECLARATION:
            declarations += 1
            if declarations > max_declarations:
                raise ProtoBoundsError(
                    f"{label}: more than {MAX_DECLARATIONS} declarations"
                )
    return tokens, declarations
