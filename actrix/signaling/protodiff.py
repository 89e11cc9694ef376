"""Per-file comparison of compiled ``.proto`` files (signaling.md §8.4).

A file's semantic fingerprint is the sha256 of its canonical descriptor: names,
source info and declaration order removed. ``compare_files`` answers Green
(equal fingerprints), Yellow (the candidate keeps every old message's (field
number, type) pairs and every old service's (method, input, output) triples)
or Red. Pure functions on already compiled descriptors; ``compat`` gets those
from the protoc workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from google.protobuf import descriptor_pb2

__all__ = ["GREEN", "RED", "YELLOW", "compare_files", "file_fingerprint"]

GREEN: Final = 0
YELLOW: Final = 1
RED: Final = 2


def _sort_in_place(items: Any, key: Callable[[Any], Any] | None = None) -> None:
    """Reorder a repeated protobuf field (declaration order is not API)."""
    ordered = sorted(items, key=key)
    del items[:]
    items.extend(ordered)


def _sort_message(message: descriptor_pb2.DescriptorProto) -> None:
    _sort_in_place(message.field, key=lambda f: f.number)
    _sort_in_place(message.extension, key=lambda f: (f.extendee, f.number))
    for nested in message.nested_type:
        _sort_message(nested)
    _sort_in_place(message.nested_type, key=lambda m: m.name)
    for enum in message.enum_type:
        _sort_enum(enum)
    _sort_in_place(message.enum_type, key=lambda e: e.name)


def _sort_enum(enum: descriptor_pb2.EnumDescriptorProto) -> None:
    _sort_in_place(enum.value, key=lambda v: (v.number, v.name))


def _canonical(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    """Serialize a descriptor with names, source info and declaration order removed."""
    canon = descriptor_pb2.FileDescriptorProto()
    canon.CopyFrom(file)
    canon.ClearField("name")  # our temp file name, not part of the API
    canon.ClearField("source_code_info")
    for message in canon.message_type:
        _sort_message(message)
    _sort_in_place(canon.message_type, key=lambda m: m.name)
    for enum in canon.enum_type:
        _sort_enum(enum)
    _sort_in_place(canon.enum_type, key=lambda e: e.name)
    for service in canon.service:
        _sort_in_place(service.method, key=lambda m: m.name)
    _sort_in_place(canon.service, key=lambda s: s.name)
    _sort_in_place(canon.extension, key=lambda f: (f.extendee, f.number))
    _sort_in_place(canon.dependency)
    # public/weak dependencies are indexes into the dependency list: remap them.
    for field in ("public_dependency", "weak_dependency"):
        old_indexes = list(getattr(file, field))
        indexes = getattr(canon, field)
        del indexes[:]
        indexes.extend(
            sorted(
                list(canon.dependency).index(file.dependency[i]) for i in old_indexes
            )
        )
    return canon.SerializeToString(deterministic=True)


def file_fingerprint(file: descriptor_pb2.FileDescriptorProto) -> str:
    """Return a compiled file's semantic fingerprint: sha256 of its canonical form."""
    return "sha256:" + hashlib.sha256(_canonical(file)).hexdigest()


def _walk_messages(
    prefix: str, messages: Sequence[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _walk_messages(name, message.nested_type)


def _api_surface(
    file: descriptor_pb2.FileDescriptorProto,
) -> tuple[dict[str, set[tuple[int, int, str]]], dict[str, set[tuple[str, str, str]]]]:
    """Map messages to (number, type, type name) sets, services to method triples."""
    prefix = f".{file.package}" if file.package else ""
    messages = {
        name: {(f.number, int(f.type), f.type_name) for f in message.field}
        for name, message in _walk_messages(prefix, file.message_type)
    }
    services = {
        f"{prefix}.{service.name}": {
            (m.name, m.input_type, m.output_type) for m in service.method
        }
        for service in file.service
    }
    return messages, services


def _is_superset(
    base: descriptor_pb2.FileDescriptorProto,
    candidate: descriptor_pb2.FileDescriptorProto,
) -> bool:
    base_messages, base_services = _api_surface(base)
    new_messages, new_services = _api_surface(candidate)
    for name, fields in base_messages.items():
        if name not in new_messages or not fields <= new_messages[name]:
            return False
    for name, methods in base_services.items():
        if name not in new_services or not methods <= new_services[name]:
            return False
    return True


def compare_files(
    base: descriptor_pb2.FileDescriptorProto,
    candidate: descriptor_pb2.FileDescriptorProto,
) -> int:
    """Return 0 (Green), 1 (Yellow) or 2 (Red) for one pair of compiled files."""
    if file_fingerprint(base) == file_fingerprint(candidate):
        return GREEN
    return YELLOW if _is_superset(base, candidate) else RED
