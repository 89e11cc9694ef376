"""Tests for actrix.core.actrid: ActrType/ActrId string forms and the type key."""

from __future__ import annotations

# Twisted's trial assertion methods carry no annotations, so under --strict every
# self.assert*() call is an untyped call.
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.actrid import (
    ActrIdError,
    actr_id_repr,
    new_actr_id,
    normalize_version,
    parse_actr_id,
    parse_actr_type,
    same_actor,
    type_key,
    type_repr,
    validate_name,
)
from actrix.proto import actr_pb2


def _type(manufacturer: str, name: str, version: str | None) -> actr_pb2.ActrType:
    actr_type = actr_pb2.ActrType(manufacturer=manufacturer, name=name)
    if version is not None:
        actr_type.version = version
    return actr_type


class TypeReprTests(SynchronousTestCase):
    """ActrType repr."""

    def test_with_version(self) -> None:
        """A non-empty version is appended after a colon."""
        self.assertEqual(
            type_repr(_type("acme", "echo-service", "1.0.0")),
            "acme:echo-service:1.0.0",
        )

    def test_absent_version(self) -> None:
        """An absent version gives manufacturer:name."""
        self.assertEqual(type_repr(_type("acme", "echo", None)), "acme:echo")

    def test_empty_version(self) -> None:
        """An empty version is written like an absent one."""
        self.assertEqual(type_repr(_type("acme", "echo", "")), "acme:echo")

    def test_blank_version_is_kept(self) -> None:
        """The repr does not trim: a blank version is written verbatim."""
        self.assertEqual(type_repr(_type("acme", "echo", " ")), "acme:echo: ")


class ActrIdReprTests(SynchronousTestCase):
    """ActrId repr."""

    def test_spec_example(self) -> None:
        """The signaling.md example formats as documented."""
        actr_id = new_actr_id(101, 0x1A2B3C, "acme", "echo-service", "1.0.0")
        self.assertEqual(actr_id_repr(actr_id), "1a2b3c@101/acme:echo-service:1.0.0")

    def test_zero_serial(self) -> None:
        """Serial 0 is written as a single zero digit."""
        self.assertEqual(actr_id_repr(new_actr_id(0, 0, "a", "b")), "0@0/a:b")

    def test_max_values(self) -> None:
        """The largest u64 serial and u32 realm format in lowercase hex/decimal."""
        actr_id = new_actr_id(2**32 - 1, 2**64 - 1, "a", "b")
        self.assertEqual(actr_id_repr(actr_id), "ffffffffffffffff@4294967295/a:b")


class ParseActrIdTests(SynchronousTestCase):
    """parse_actr_id."""

    def test_round_trip_with_version(self) -> None:
        """Parsing a repr gives back the same message."""
        original = new_actr_id(101, 0x1A2B3C, "acme", "echo-service", "1.0.0")
        parsed = parse_actr_id(actr_id_repr(original))
        self.assertEqual(parsed, original)

    def test_round_trip_without_version(self) -> None:
        """A repr without version parses to an absent version."""
        original = new_actr_id(7, 42, "acme", "echo")
        parsed = parse_actr_id(actr_id_repr(original))
        self.assertEqual(parsed, original)
        self.assertFalse(parsed.type.HasField("version"))

    def test_unicode_names_round_trip(self) -> None:
        """Unicode letters and digits are accepted in names."""
        original = new_actr_id(1, 1, "Müller", "сервис٣", "v1")
        self.assertEqual(parse_actr_id(actr_id_repr(original)), original)

    def test_empty_version_is_present(self) -> None:
        """A trailing colon yields a present, empty version."""
        parsed = parse_actr_id("1@2/a:b:")
        self.assertTrue(parsed.type.HasField("version"))
        self.assertEqual(parsed.type.version, "")

    def test_version_is_not_checked(self) -> None:
        """Any text after the second colon becomes the version."""
        parsed = parse_actr_id("1@2/a:b:!@/ x")
        self.assertEqual(parsed.type.version, "!@/ x")

    def test_uppercase_hex_and_leading_zeros(self) -> None:
        """Like Rust's from_str_radix, uppercase hex and leading zeros parse."""
        parsed = parse_actr_id("00AbC@007/a:b")
        self.assertEqual(parsed.serial_number, 0xABC)
        self.assertEqual(parsed.realm.realm_id, 7)

    def test_leading_plus(self) -> None:
        """Like Rust's integer parsers, one leading plus sign is accepted."""
        parsed = parse_actr_id("+ff@+9/a:b")
        self.assertEqual((parsed.serial_number, parsed.realm.realm_id), (255, 9))

    def test_splits_at_first_separators(self) -> None:
        """The serial ends at the first '@' and the realm at the first '/'."""
        self.assertRaises(ActrIdError, parse_actr_id, "1@2@3/a:b")
        parsed = parse_actr_id("1@2/a:b:c/d")
        self.assertEqual(parsed.type.version, "c/d")

    def test_missing_at(self) -> None:
        """A string without '@' is rejected."""
        self.assertRaises(ActrIdError, parse_actr_id, "invalid-string")

    def test_missing_slash(self) -> None:
        """A string without '/' is rejected."""
        self.assertRaises(ActrIdError, parse_actr_id, "123@101")

    def test_bad_serial(self) -> None:
        """Non-hex, empty, prefixed, signed or too large serials are rejected."""
        for serial in ("xyz", "", "0x1f", "-1", "1_0", " 1", "+", "1" * 17, "ff "):
            with self.subTest(serial=serial):
                self.assertRaises(ActrIdError, parse_actr_id, f"{serial}@1/a:b")

    def test_bad_realm(self) -> None:
        """Non-decimal, empty, non-ASCII or too large realms are rejected."""
        for realm in ("", "a", "1.5", "-1", "٣", "4294967296", "1 ", "1_0"):
            with self.subTest(realm=realm):
                self.assertRaises(ActrIdError, parse_actr_id, f"1@{realm}/a:b")

    def test_largest_values_parse(self) -> None:
        """The u64 and u32 maxima (even with leading zeros) are accepted."""
        parsed = parse_actr_id("0000ffffffffffffffff@00004294967295/a:b")
        self.assertEqual(parsed.serial_number, 2**64 - 1)
        self.assertEqual(parsed.realm.realm_id, 2**32 - 1)

    def test_huge_decimal_realm(self) -> None:
        """A realm with thousands of digits is rejected, not an int-limit error."""
        self.assertRaises(ActrIdError, parse_actr_id, "1@" + "9" * 5000 + "/a:b")

    def test_error_is_value_error(self) -> None:
        """ActrIdError is a ValueError."""
        self.assertTrue(issubclass(ActrIdError, ValueError))


class ParseActrTypeTests(SynchronousTestCase):
    """Type part counting and name checks during parsing."""

    def test_one_part(self) -> None:
        """A single segment is rejected."""
        self.assertRaises(ActrIdError, parse_actr_type, "acme-echo")

    def test_four_or_more_parts(self) -> None:
        """Four or more segments are rejected."""
        for text in ("a:b:c:d", "a:b:c:d:e", "a:b:1.0:"):
            with self.subTest(text=text):
                self.assertRaises(ActrIdError, parse_actr_type, text)
                self.assertRaises(ActrIdError, parse_actr_id, f"1@1/{text}")

    def test_invalid_manufacturer(self) -> None:
        """A manufacturer starting with a digit is rejected."""
        self.assertRaises(ActrIdError, parse_actr_type, "1acme:echo")
        self.assertRaises(ActrIdError, parse_actr_id, "1@1/1acme:echo")

    def test_invalid_name(self) -> None:
        """A name with a forbidden character is rejected."""
        self.assertRaises(ActrIdError, parse_actr_type, "acme:echo!")

    def test_two_and_three_parts(self) -> None:
        """Two parts give no version, three parts a version."""
        self.assertFalse(parse_actr_type("a:b").HasField("version"))
        self.assertEqual(parse_actr_type("a:b:1.2.3").version, "1.2.3")


class ValidateNameTests(SynchronousTestCase):
    """Every rule of the actr Name check."""

    def test_valid_names(self) -> None:
        """Names following all rules pass."""
        for name in (
            "a",
            "acme",
            "echo-service",
            "a_b.c-d9",
            "Ab1",
            "é",
            "日本",
            "x" * 32,
        ):
            with self.subTest(name=name):
                validate_name(name)

    def test_empty(self) -> None:
        """An empty name is rejected."""
        self.assertRaises(ActrIdError, validate_name, "")

    def test_length_counts_utf8_bytes(self) -> None:
        """The 32 limit is in UTF-8 bytes, not characters."""
        self.assertRaises(ActrIdError, validate_name, "x" * 33)
        validate_name("é" * 16)
        self.assertRaises(ActrIdError, validate_name, "é" * 17)

    def test_must_start_alphabetic(self) -> None:
        """Digits, punctuation and marks cannot start a name."""
        for name in ("1abc", "-abc", "_abc", ".abc", "٣abc"):
            with self.subTest(name=name):
                self.assertRaises(ActrIdError, validate_name, name)

    def test_letter_number_may_start(self) -> None:
        """Rust's is_alphabetic includes letter numbers such as Roman numerals."""
        validate_name("\u216bx")

    def test_must_end_alphanumeric(self) -> None:
        """A trailing '-', '_' or '.' is rejected; a trailing digit is fine."""
        for name in ("abc-", "abc_", "abc."):
            with self.subTest(name=name):
                self.assertRaises(ActrIdError, validate_name, name)
        validate_name("abc9")
        validate_name("abc٣")

    def test_invalid_characters(self) -> None:
        """Anything beyond alphanumerics, '-', '_' and '.' is rejected."""
        for char in (" ", ":", "/", "@", "!", "+", "\u0301", "\x00", "\u200b"):
            with self.subTest(char=char):
                self.assertRaises(ActrIdError, validate_name, f"a{char}b")


class TypeKeyTests(SynchronousTestCase):
    """Signaling type key."""

    def test_version_trimmed(self) -> None:
        """Surrounding whitespace of the version is removed."""
        self.assertEqual(type_key(_type("mfg", "svc", "  2 \t")), "mfg:svc:2")

    def test_blank_version_is_absent(self) -> None:
        """A blank, empty or absent version gives manufacturer:name."""
        for version in (None, "", "   ", "\u3000"):
            with self.subTest(version=version):
                self.assertEqual(type_key(_type("mfg", "svc", version)), "mfg:svc")

    def test_rust_trim_keeps_separators(self) -> None:
        """Only Unicode White_Space is trimmed, as in Rust (not U+001F)."""
        self.assertEqual(type_key(_type("m", "s", "\x1f1")), "m:s:\x1f1")

    def test_normalize_version(self) -> None:
        """normalize_version trims and maps blank to None."""
        self.assertIsNone(normalize_version(None))
        self.assertIsNone(normalize_version(" "))
        self.assertEqual(normalize_version("  alpha  "), "alpha")


class SameActorTests(SynchronousTestCase):
    """same_actor and new_actr_id."""

    def test_ignores_type(self) -> None:
        """Ids with equal realm and serial match even with different types."""
        self.assertTrue(
            same_actor(new_actr_id(1, 5, "a", "b"), new_actr_id(1, 5, "c", "d", "9"))
        )

    def test_realm_or_serial_differs(self) -> None:
        """A different realm or serial means a different actor."""
        base = new_actr_id(1, 5, "a", "b")
        self.assertFalse(same_actor(base, new_actr_id(2, 5, "a", "b")))
        self.assertFalse(same_actor(base, new_actr_id(1, 6, "a", "b")))

    def test_new_actr_id_is_complete(self) -> None:
        """The builder fills every required field; version None stays absent."""
        actr_id = new_actr_id(3, 4, "m", "n")
        self.assertTrue(actr_id.IsInitialized())
        self.assertFalse(actr_id.type.HasField("version"))
        self.assertEqual(new_actr_id(3, 4, "m", "n", "").type.version, "")
        self.assertTrue(new_actr_id(3, 4, "m", "n", "").type.HasField("version"))

    def test_new_actr_id_range(self) -> None:
        """Out-of-range integers raise ValueError."""
        self.assertRaises(ValueError, new_actr_id, 2**32, 1, "a", "b")
        self.assertRaises(ValueError, new_actr_id, 1, -1, "a", "b")
