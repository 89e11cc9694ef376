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


def stdlib_loads(data: bytes) -> Any:
    """What json_codec.loads answered before orjson: json with the bounds."""
    try:
        text = data.decode("utf-8")
        value = json_codec._DECODER.decode(text)
    except (ValueError, RecursionError):
        return "refused"
    if not json_codec._depth_ok(value, json_codec.MAX_DEPTH):
        return "refused"
    return value


def codec_loads(data: bytes) -> Any:
    try:
        return json_codec.loads(data)
    except json_codec.JsonDecodeError:
        return "refused"


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0, -0.0 not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


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


class ParseTests(SynchronousTestCase):
    @settings(max_examples=400)
    @given(VALUES)
    def test_documents_parse_as_with_json(self, value: Any) -> None:
        """Any document json wrote parses to the same value, types included."""
        data = json_codec._ENCODER.encode(value).encode("utf-8", "surrogatepass")
        self.assertTrue(same(codec_loads(data), stdlib_loads(data)), data)

    @given(st.binary(max_size=60))
    def test_any_bytes_parse_or_fail_alike(self, data: bytes) -> None:
        self.assertTrue(same(codec_loads(data), stdlib_loads(data)), data)

    def test_the_known_differences(self) -> None:
        """Where orjson alone would differ, the result is json's."""
        deep = json_codec.MAX_DEPTH
        for data in (
            b"18446744073709551616",  # orjson: a float
            b"-9223372036854775809",
            b"[99999999999999999999999]",
            b'{"a":-9999999999999999999}',
            b"1e400",  # orjson refuses; json: inf
            b'"\\ud800"',  # a lone surrogate: orjson refuses
            b"0.0000000000000000000000000000000000000001",  # 42 characters
            b"[1" + b"0" * 40 + b"]",
            b"NaN",
            b'{"a":1,"b":2,"a":3}',
            b"\xef\xbb\xbf{}",
            b"[" * deep + b"]" * deep,
            b"[" * (deep + 1) + b"]" * (deep + 1),
            b'{"a":' * 2000 + b"1" + b"}" * 2000,
            b'"\\u00e9\\ud83d\\ude00"',
        ):
            self.assertTrue(same(codec_loads(data), stdlib_loads(data)), data)
        self.assertEqual(json_codec.loads(b"[18446744073709551616]"), [2**64])
        self.assertEqual(json_codec.loads(b"[18446744073709551615]"), [2**64 - 1])


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

    @given(VALUES, st.sampled_from([None, "r1"]))
    def test_server_frames_alike(self, value: Any, request_id: str | None) -> None:
        """encode() (which walks only the payload) writes json's bytes too."""
        frame: Any = {"type": "OFFER", "peer_id": "a", "target_id": "b"}
        if value is not None:
            frame["payload"] = value
        frame["timestamp"] = 1767222000000
        if request_id:
            frame["request_id"] = request_id
        try:
            written: bytes | str = json_codec.encode(
                "OFFER",
                1767222000000,
                peer_id="a",
                target_id="b",
                payload=value,
                request_id=request_id,
            )
        except UnicodeEncodeError:
            written = "unencodable"
        self.assertEqual(written, stdlib_dumps(frame))

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
