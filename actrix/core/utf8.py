"""Finding proto2 ``string`` fields whose bytes are not UTF-8, once per decoded message.

The installed protobuf (upb backend, 7.x) does not check UTF-8 when it parses a
proto2 ``string`` field, and it does not raise when such a field is read either:
the attribute comes back as the raw ``bytes`` instead of ``str``. A handler that
then formats, compares, copies or re-encodes it fails far from the decoder, after
it may have created state. proto2 has no option to ask the parser for the check,
but editions do (``features.utf8_validation = VERIFY``), and upb then refuses the
message in C.

:class:`Utf8Check` builds, once, an editions copy of a message's schema with every
proto2 rule kept (required fields, closed enums, unpacked repeated fields) and
UTF-8 verification on, and uses it as a filter: one extra parse for a frame that
has a byte >= 0x80 (an ASCII-only frame cannot hold bad UTF-8 and costs one
``bytes.isascii``). Only when that parse refuses the frame is the real message
walked, over its set fields with a depth bound, to name the offending field;
the walk, not the filter, has the last word.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import DecodeError, Message

MAX_DEPTH: Final = 32

_FDP = descriptor_pb2.FieldDescriptorProto
_Features = descriptor_pb2.FeatureSet


class Utf8Check:
    """Names the first string field of a decoded message that is not UTF-8."""

    __slots__ = ("_max_depth", "_strict")

    def __init__(
        self, message_class: type[Message], max_depth: int = MAX_DEPTH
    ) -> None:
        # The stubs type DESCRIPTOR as a union with upb's own class.
        self._strict = _strict_class(cast(Descriptor, message_class.DESCRIPTOR))
        self._max_depth = max_depth

    def invalid_field(self, data: bytes, message: Message) -> str | None:
        """The dotted path of a string field of ``message`` that is not UTF-8.

        ``message`` must be what ``data`` parsed into. None means every string
        field (at any depth) is valid. A message nested deeper than the bound
        is reported at the path where the walk stopped.
        """
        if data.isascii():
            return None
        try:
            self._strict().ParseFromString(data)
        except DecodeError:
            return invalid_string_field(message, self._max_depth)
        return None


def invalid_string_field(message: Message, max_depth: int = MAX_DEPTH) -> str | None:
    """Walk the set fields of ``message``; the path of the first non-UTF-8 string."""
    return _walk(message, "", max_depth)


def _walk(message: Message, prefix: str, depth: int) -> str | None:
    if depth <= 0:
        return prefix or "."
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                for i, item in enumerate(value):
                    if item.__class__ is bytes:
                        return f"{path}[{i}]"
            elif value.__class__ is bytes:
                return path
        elif field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            if field.is_repeated:
                for i, item in enumerate(value):
                    found = _walk(item, f"{path}[{i}].", depth - 1)
                    if found is not None:
                        return found
            else:
                found = _walk(value, path + ".", depth - 1)
                if found is not None:
                    return found
    return None


def _strict_class(descriptor: Descriptor) -> type[Message]:
    """A class for ``descriptor`` in a private pool that verifies UTF-8."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        if proto.syntax in ("", "proto2"):
            _verify_utf8(proto)
        pool.Add(proto)
        added.add(file.name)

    add(descriptor.file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(descriptor.full_name)
    )


def _verify_utf8(proto: descriptor_pb2.FileDescriptorProto) -> None:
    """Rewrite a proto2 file as edition 2023 with proto2 rules and UTF-8 checks."""
    proto.syntax = "editions"
    proto.edition = descriptor_pb2.EDITION_2023
    features = proto.options.features
    features.field_presence = _Features.EXPLICIT
    features.enum_type = _Features.CLOSED
    features.repeated_field_encoding = _Features.EXPANDED
    features.utf8_validation = _Features.VERIFY
    features.message_encoding = _Features.LENGTH_PREFIXED
    features.json_format = _Features.LEGACY_BEST_EFFORT
    _rewrite_fields(proto.extension)
    for message in proto.message_type:
        _rewrite_message(message)


def _rewrite_message(message: descriptor_pb2.DescriptorProto) -> None:
    _rewrite_fields(message.field)
    _rewrite_fields(message.extension)
    for nested in message.nested_type:
        _rewrite_message(nested)


def _rewrite_fields(fields: Iterable[descriptor_pb2.FieldDescriptorProto]) -> None:
    for field in fields:
        options = field.options
        if field.label == _FDP.LABEL_REQUIRED:
            field.label = _FDP.LABEL_OPTIONAL
            options.features.field_presence = _Features.LEGACY_REQUIRED
        if field.type == _FDP.TYPE_GROUP:
            field.type = _FDP.TYPE_MESSAGE
            options.features.message_encoding = _Features.DELIMITED
        if options.HasField("packed"):
            packed = options.packed
            options.ClearField("packed")
            options.features.repeated_field_encoding = (
                _Features.PACKED if packed else _Features.EXPANDED
            )
