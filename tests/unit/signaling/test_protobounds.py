"""Tests for actrix.signaling.protobounds: bounds on untrusted .proto text."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.signaling.protobounds import (
    MAX_DECLARATIONS,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_NESTING_DEPTH,
    MAX_SPEC_BYTES,
    MAX_TOKENS,
    ProtoBoundsError,
    check_file,
    check_files,
)
from tests.unit.signaling.hostile_protos import nested_aggregate_option, nested_groups


def nested(depth: int, opening: str = "{", closing: str = "}") -> str:
    """Brackets nested exactly ``depth`` deep."""
    return opening * depth + closing * depth


class LexerTests(SynchronousTestCase):
    """What the lexer counts and what it skips."""

    def test_counts_tokens_and_declarations(self) -> None:
        """Words, strings and symbols are tokens; ';' and '{' end declarations."""
        text = 'syntax = "proto3";\nmessage M { int32 a = 1; }\n'
        # syntax = "proto3" ; message M { int32 a = 1 ; } -> 13 tokens
        self.assertEqual(check_file(text), (13, 3))

    def test_comments_hide_brackets(self) -> None:
        """Brackets in // and /* */ comments neither nest nor count."""
        deep = nested(MAX_NESTING_DEPTH + 1)
        text = f"// {deep}\n/* {deep}\n{deep} */ message M {{}}"
        self.assertEqual(check_file(text), (4, 1))

    def test_strings_hide_brackets(self) -> None:
        """Brackets in single- or double-quoted strings (with escapes) do not nest."""
        deep = nested(MAX_NESTING_DEPTH + 1)
        text = f"a = \"{deep}\\\" {deep}\"; b = '{deep}\\' {deep}';"
        self.assertEqual(check_file(text), (8, 2))

    def test_unterminated_string_ends_at_the_line(self) -> None:
        """A string without its closing quote does not swallow the next line."""
        with self.assertRaises(ProtoBoundsError):
            check_file('a = "open\n' + nested(MAX_NESTING_DEPTH + 1))

    def test_unterminated_comment_runs_to_the_end(self) -> None:
        """A block comment without its end hides everything after it."""
        self.assertEqual(check_file("a /* " + nested(MAX_NESTING_DEPTH + 1)), (1, 0))

    def test_every_bracket_kind_nests(self) -> None:
        """( [ < and { share one depth counter."""
        text = "(" * 16 + "[" * 16 + "<" * 16 + "{" * 17
        with self.assertRaises(ProtoBoundsError):
            check_file(text)


class LimitTests(SynchronousTestCase):
    """Each bound is hit exactly past its value."""

    def test_depth_at_the_bound(self) -> None:
        """MAX_NESTING_DEPTH levels pass; one more is refused."""
        for opening, closing in ("{}", "()", "[]", "<>"):
            check_file(nested(MAX_NESTING_DEPTH, opening, closing))
            with self.assertRaisesRegex(ProtoBoundsError, "nesting deeper"):
                check_file(nested(MAX_NESTING_DEPTH + 1, opening, closing))

    def test_closing_brackets_do_not_go_negative(self) -> None:
        """Unbalanced closers cannot buy depth for later openers."""
        with self.assertRaises(ProtoBoundsError):
            check_file("}" * 100 + "{" * (MAX_NESTING_DEPTH + 1))

    def test_file_size_at_the_bound(self) -> None:
        """MAX_FILE_BYTES bytes pass (UTF-8 encoded); one more byte is refused."""
        check_file("/*" + "x" * (MAX_FILE_BYTES - 4) + "*/")
        with self.assertRaisesRegex(ProtoBoundsError, "bytes"):
            check_file("/*" + "x" * (MAX_FILE_BYTES - 3) + "*/")
        with self.assertRaisesRegex(ProtoBoundsError, "bytes"):
            check_file("//" + "é" * (MAX_FILE_BYTES // 2))

    def test_tokens_at_the_bound(self) -> None:
        """MAX_TOKENS tokens pass; one more is refused."""
        check_file("a " * MAX_TOKENS)
        with self.assertRaisesRegex(ProtoBoundsError, "tokens"):
            check_file("a " * (MAX_TOKENS + 1))

    def test_declarations_at_the_bound(self) -> None:
        """MAX_DECLARATIONS declarations pass; one more is refused."""
        check_file(";" * MAX_DECLARATIONS)
        with self.assertRaisesRegex(ProtoBoundsError, "declarations"):
            check_file(";" * (MAX_DECLARATIONS + 1))

    def test_files_per_spec_at_the_bound(self) -> None:
        """MAX_FILES files pass; one more is refused."""
        check_files(["message M {}"] * MAX_FILES)
        with self.assertRaisesRegex(ProtoBoundsError, "files"):
            check_files(["message M {}"] * (MAX_FILES + 1))

    def test_spec_size_is_summed(self) -> None:
        """Files each under MAX_FILE_BYTES still add up to MAX_SPEC_BYTES at most."""
        per_file = MAX_SPEC_BYTES // 4
        check_files(["/*" + "x" * (per_file - 4) + "*/"] * 4)
        with self.assertRaisesRegex(ProtoBoundsError, "bytes"):
            check_files(["/*" + "x" * (per_file - 4) + "*/"] * 4 + ["a"])

    def test_tokens_and_declarations_are_summed(self) -> None:
        """The per-spec token and declaration budgets span all files."""
        half = ";" * (MAX_DECLARATIONS // 2)
        check_files([half, half])
        with self.assertRaisesRegex(ProtoBoundsError, "declarations"):
            check_files([half, half, ";"])
        words = "a " * (MAX_TOKENS // 2)
        check_files([words, words])
        with self.assertRaisesRegex(ProtoBoundsError, "tokens"):
            check_files([words, words, "a"])

    def test_error_names_the_file(self) -> None:
        """The refusal says which file of the spec broke which bound."""
        with self.assertRaisesRegex(
            ProtoBoundsError, "^candidate spec file 1: nesting deeper than 64$"
        ):
            check_files(["a", nested(65)], "candidate spec")


class HostileTextTests(SynchronousTestCase):
    """The texts that crashed or bloated protoc are refused before parsing."""

    def test_deeply_nested_aggregate_option_is_refused(self) -> None:
        """The 6 000-deep aggregate option (SIGSEGV in protoc) is over the depth."""
        with self.assertRaisesRegex(ProtoBoundsError, "nesting deeper"):
            check_files([nested_aggregate_option()])

    def test_deeply_nested_groups_are_refused(self) -> None:
        """2 500 nested groups (0.5 GB in protoc) are over the depth."""
        with self.assertRaisesRegex(ProtoBoundsError, "nesting deeper"):
            check_files([nested_groups()])

    def test_shallow_versions_pass(self) -> None:
        """The same shapes at an ordinary depth are accepted."""
        check_files([nested_aggregate_option(10), nested_groups(10)])


class PropertyTests(SynchronousTestCase):
    """Any text is either accepted or refused with ProtoBoundsError."""

    @given(st.text(alphabet=st.sampled_from("{}()[]<>;\"'\\/*\n ax1é\ud800")))
    def test_proto_like_text_raises_only_bound_errors(self, text: str) -> None:
        """Text made of the lexer's special characters never raises anything else."""
        try:
            tokens, declarations = check_file(text)
        except ProtoBoundsError:
            return
        self.assertLessEqual(tokens, MAX_TOKENS)
        self.assertLessEqual(declarations, MAX_DECLARATIONS)

    @given(st.lists(st.text(), max_size=4))
    def test_any_text_raises_only_bound_errors(self, texts: list[str]) -> None:
        """Arbitrary Unicode, surrogates included, never raises anything else."""
        with contextlib.suppress(ProtoBoundsError):
            check_files(texts)
