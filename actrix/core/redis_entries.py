"""How one directory entry is stored: the fields of its Redis hash.

:func:`encode_entry` and :func:`decode_entry` are inverse; a hash that is
not a readable entry (edited by hand, written by another version) raises
:class:`CorruptEntry`, which the directory logs and skips.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from actrix.core.actrid import normalize_version
from actrix.core.directory import ActorEntry, Heartbeat, type_id
from actrix.proto import actr_pb2


class CorruptEntry(Exception):
    """A hash in Redis is not a readable directory entry."""


def _opt(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def encode_entry(entry: ActorEntry) -> list[bytes | str]:
    """Field/value pairs of an entry's hash (without ``seq`` and ``tidx``)."""
    spec = b"" if entry.service_spec is None else entry.service_spec.SerializeToString()
    location = "" if entry.location is None else json.dumps(list(entry.location))
    return [
        "id",
        entry.actr_id.SerializeToString(),
        "tk",
        entry.type_key,
        "name",
        entry.service_name,
        "spec",
        spec,
        "hasspec",
        "1" if entry.service_spec is not None else "0",
        "ws",
        "" if entry.ws_address is None else entry.ws_address,
        "hasws",
        "1" if entry.ws_address is not None else "0",
        "av",
        _opt(entry.availability),
        "pr",
        _opt(entry.power_reserve),
        "mb",
        _opt(entry.mailbox_backlog),
        "sticky",
        json.dumps(list(entry.sticky_client_ids)),
        "hb",
        repr(entry.last_heartbeat),
        "on",
        "1" if entry.online else "0",
        "loc",
        location,
        "node",
        entry.node,
        "sess",
        str(entry.session),
    ]


def beat_fields(beat: Heartbeat, now: float) -> list[bytes | str]:
    return [
        "av",
        repr(beat.availability),
        "pr",
        repr(beat.power_reserve),
        "mb",
        repr(beat.mailbox_backlog),
        "sticky",
        json.dumps(list(beat.sticky_client_ids)),
        "hb",
        repr(now),
    ]


def decode_entry(reply: Sequence[bytes]) -> ActorEntry:
    """The entry of an HGETALL reply.

    Raises:
        CorruptEntry: a field is missing or unreadable.
    """
    try:
        fields = {
            reply[i].decode("ascii"): reply[i + 1] for i in range(0, len(reply), 2)
        }
        actr_id = actr_pb2.ActrId()
        actr_id.ParseFromString(fields["id"])
        spec: actr_pb2.ServiceSpec | None = None
        if fields["hasspec"] == b"1":
            spec = actr_pb2.ServiceSpec()
            spec.ParseFromString(fields["spec"])
        location = None
        if fields["loc"]:
            lat, lon = json.loads(fields["loc"])
            location = (float(lat), float(lon))
        sticky = json.loads(fields["sticky"])
        if not isinstance(sticky, list) or not all(isinstance(s, str) for s in sticky):
            raise ValueError("sticky")
        return ActorEntry(
            actr_id=actr_id,
            type_key=fields["tk"].decode("utf-8"),
            service_name=fields["name"].decode("utf-8"),
            service_spec=spec,
            ws_address=fields["ws"].decode("utf-8")
            if fields["hasws"] == b"1"
            else None,
            availability=int(fields["av"]) if fields["av"] else None,
            power_reserve=float(fields["pr"]) if fields["pr"] else None,
            mailbox_backlog=float(fields["mb"]) if fields["mb"] else None,
            sticky_client_ids=tuple(sticky),
            last_heartbeat=float(fields["hb"]),
            online=fields["on"] == b"1",
            location=location,
            node=fields["node"].decode("utf-8"),
            session=int(fields["sess"]),
        )
    except Exception as e:
        raise CorruptEntry(str(e)) from e


# Key parts: types and specs named in keys, hex-encoded (any text is safe).


def hex_text(text: str) -> str:
    return text.encode("utf-8").hex()


def type_token(actr_type: actr_pb2.ActrType) -> str:
    return json.dumps(type_id(actr_type), separators=(",", ":")).encode().hex()


def spec_token(actr_type: actr_pb2.ActrType, fingerprint: str) -> str:
    version = normalize_version(
        actr_type.version if actr_type.HasField("version") else None
    )
    key = [actr_type.manufacturer, actr_type.name, version or "", fingerprint]
    return json.dumps(key, separators=(",", ":")).encode().hex()
