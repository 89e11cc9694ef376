"""UTF-8 checking of proto2 string fields (the strict schema copy and the walk)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from actrix.core.utf8 import Utf8Check, invalid_string_field
from actrix.proto import actr_pb2

BAD = b"\xed\xa0\x80!"  # an encoded surrogate: not UTF-8, same length as "QQQQ"


def _spoiled(message: actr_pb2.RegisterRequest) -> bytes:
    data = message.SerializePartialToString()
    assert data.count(b"QQQQ") == 1
    return data.replace(b"QQQQ", BAD)


def _parsed(data: bytes) -> actr_pb2.RegisterRequest:
    message = actr_pb2.RegisterRequest()
    message.ParseFromString(data)
    return message


class Utf8CheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.check = Utf8Check(actr_pb2.RegisterRequest)

    def test_installed_protobuf_returns_bytes_for_bad_strings(self) -> None:
        """The behaviour this module exists for: parse succeeds, the field is bytes."""
        request = actr_pb2.RegisterRequest()
        request.actr_type.name = "QQQQ"
        self.assertEqual(_parsed(_spoiled(request)).actr_type.name, BAD)

    def test_repeated_message_path(self) -> None:
        """A bad string inside a repeated message is named with its index."""
        request = actr_pb2.RegisterRequest()
        request.acl.rules.add().principals.add().actr_type.name = "ok"
        request.acl.rules.add().principals.add().actr_type.name = "QQQQ"
        data = _spoiled(request)
        self.assertEqual(
            self.check.invalid_field(data, _parsed(data)),
            "acl.rules[1].principals[0].actr_type.name",
        )

    def test_proto2_rules_are_kept(self) -> None:
        """A missing required field and an unknown enum value pass the strict copy."""
        request = actr_pb2.RegisterRequest()
        request.actr_type.manufacturer = "caf\u00e9"  # non-ASCII: the copy parses it
        rule = actr_pb2.AclRule()
        rule.principals.add()  # permission (required) left out, then set to 7
        rule_bytes = rule.SerializePartialToString() + b"\x10\x07"
        acl_bytes = b"\x0a" + bytes([len(rule_bytes)]) + rule_bytes
        data = request.SerializePartialToString()
        data += b"\x22" + bytes([len(acl_bytes)]) + acl_bytes
        # Had the strict parse refused ``data``, the walk would report this one.
        spoiled = actr_pb2.RegisterRequest()
        spoiled.actr_type.name = "QQQQ"
        self.assertIsNone(self.check.invalid_field(data, _parsed(_spoiled(spoiled))))

    def test_ascii_frames_are_not_parsed_again(self) -> None:
        """An ASCII-only frame is accepted without a second parse or a walk."""
        request = actr_pb2.RegisterRequest()
        request.actr_type.name = "echo"
        data = request.SerializePartialToString()
        self.assertTrue(data.isascii())
        spoiled = actr_pb2.RegisterRequest()
        spoiled.actr_type.name = "QQQQ"
        # The walk would report this message; an ASCII frame never gets there.
        self.assertIsNone(self.check.invalid_field(data, _parsed(_spoiled(spoiled))))

    def test_walk_depth_is_bounded(self) -> None:
        """Past the depth bound the walk stops and reports where it stopped."""
        request = actr_pb2.RegisterRequest()
        request.acl.rules.add().principals.add().actr_type.name = "ok"
        self.assertEqual(invalid_string_field(request, 2), "acl.rules[0].")
        self.assertIsNone(invalid_string_field(request))
