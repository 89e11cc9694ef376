"""orjson in the JSON room codec: the standard library's bytes, exactly.

json_codec writes with orjson where that gives what ``json`` (compact,
``ensure_ascii=False``) gives and with ``json`` elsewhere; these tests compare
the two on values built to hit every difference known (floats in exponent
notation, integers past 64 bits, lone surrogates, non-finite numbers, tuples,
non-string keys, deep nesting).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from actrix.rooms import json_codec

NUMBERS = (
    st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-05, 1e-7, 1e16, 1e22, 5e-324, -0.0, 0.1, 1.5e300])
)
TEXT = st.text(max_size=8) | st.sampled_from(["\u2028", "\x7f", "\x00\x1f", "é😀"])
VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(TEXT, c, max_size=4),
    max_leaves=12,
)


def stdlib_dumps(value: Any) -> bytes | str:
    try:
        return json_codec._ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return "unencodable"


def codec_dumps(value: Any) -> bytes | str:
    try:
        return json_codec.compact_bytes(value)
    except UnicodeEncodeError:
        return "unencodable"


class WriteTests(SynchronousTestCase):
    @settings(max_examples=400)
    @given(VALUES)
    def test_values_write_as_with_the_standard_library(self, value: Any) -> None:
        """compact_bytes writes what json.dumps(compact, ensure_ascii=False) did."""
        self.assertEqual(codec_dumps(value), stdlib_dumps(value))
        if isinstance(codec_dumps(value), bytes):
            stdlib = json_codec._ENCODER.encode(value)
            self.assertEqual(json_codec.compact(value), stdlib)

    def test_the_known_differences(self) -> None:
        """Floats, big integers, tuples, non-finite numbers, lone surrogates."""
        for value in (
            {"t": 1e-05},
            [1e16, 2.5e-7, 1e22],
            {"big": 2**64, "small": -(2**63) - 1},
            ("a", 1),
            {"n": math.inf},
            {"n": math.nan},
            {1: "int key"},
            {"nest": [[[{"x": 0.5}]]]},
        ):
            self.assertEqual(codec_dumps(value), stdlib_dumps(value), repr(value))
        self.assertEqual(codec_dumps({"s": "\ud800"}), "unencodable")
        self.assertEqual(json_codec.compact({"s": "\ud800"}), '{"s":"\ud800"}')

    @given(VALUES)
    def test_parsed_documents_write_back_alike(self, value: Any) -> None:
        """Relayed payloads are parsed by json_codec first: the same holds."""
        parsed = json_codec.loads(json.dumps(value))
        self.assertEqual(codec_dumps(parsed), stdlib_dumps(parsed))

    def test_deep_values_take_the_standard_library(self) -> None:
        value: Any = 1
        for _ in range(json_codec.MAX_DEPTH + 5):
            value = [value]
        self.assertEqual(codec_dumps(value), stdlib_dumps(value))
