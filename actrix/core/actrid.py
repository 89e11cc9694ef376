"""String forms of actor identities (ActrType, ActrId) and the signaling type key.

Mirrors ``actr_ext.rs`` and ``name.rs`` of actr-protocol and
``actr_type_utils.rs`` of the signaling crate (signaling.md §3.1): the repr
strings appear in token claims, URL parameters and ACL rows, so they must match
the Rust implementation byte for byte.
"""

from __future__ import annotations

import re
import unicodedata

from actrix.proto import actr_pb2

__all__ = [
    "ActrIdError",
    "actr_id_repr",
    "new_actr_id",
    "normalize_version",
    "parse_actr_id",
    "parse_actr_type",
    "same_actor",
    "type_key",
    "type_repr",
    "validate_name",
]

MAX_NAME_BYTES = 32
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1

# Rust's u64::from_str_radix / u32::from_str: optional '+', ASCII digits only,
# leading zeros allowed. Python's int() is laxer (whitespace, '_', '0x',
# non-ASCII digits), so the text is checked first.
_HEX_RE = re.compile(r"\+?[0-9A-Fa-f]+")
_DEC_RE = re.compile(r"\+?[0-9]+")

# Rust's str::trim removes Unicode White_Space; Python's str.strip() also
# removes U+001C..U+001F, which Rust keeps.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class ActrIdError(ValueError):
    """An ActrId, ActrType or name string is malformed."""


def _is_alphabetic(char: str) -> bool:
    # Rust char::is_alphabetic is the Unicode Alphabetic property: letters (L*),
    # letter numbers (Nl) and Other_Alphabetic marks. The last set has no
    # stdlib table; those combining marks are rejected here.
    return char.isalpha() or unicodedata.category(char) == "Nl"


def _is_alphanumeric(char: str) -> bool:
    # Rust: Alphabetic || Numeric (Nd, Nl, No); Python's isalnum covers the same
    # categories except the Other_Alphabetic marks.
    return char.isalnum()


def validate_name(name: str) -> None:
    """Check a manufacturer or type name against the actr ``Name`` rules.

    A name is non-empty, at most 32 UTF-8 bytes, starts with an alphabetic
    character, ends with an alphanumeric one and otherwise holds only
    alphanumerics, ``-``, ``_`` and ``.`` (Unicode classes).

    Raises:
        ActrIdError: naming the first rule the name breaks.
    """
    if not name:
        raise ActrIdError("name is empty")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise ActrIdError(f"name exceeds {MAX_NAME_BYTES} bytes, length: {size}")
    if not _is_alphabetic(name[0]):
        raise ActrIdError(
            f"name must start with an alphabetic character, found: {name[0]!r}"
        )
    for char in name[1:]:
        if not (_is_alphanumeric(char) or char in "-_."):
            raise ActrIdError(f"name contains invalid character: {char!r}")
    if not _is_alphanumeric(name[-1]):
        raise ActrIdError(
            f"name must end with an alphanumeric character, found: {name[-1]!r}"
        )


def type_repr(actr_type: actr_pb2.ActrType) -> str:
    """Return ``manufacturer:name``, plus ``:version`` when the version is non-empty."""
    if actr_type.version:
        return f"{actr_type.manufacturer}:{actr_type.name}:{actr_type.version}"
    return f"{actr_type.manufacturer}:{actr_type.name}"


def actr_id_repr(actr_id: actr_pb2.ActrId) -> str:
    """Return ``<serial lowercase hex>@<realm decimal>/<type repr>``."""
    return (
        f"{actr_id.serial_number:x}@{actr_id.realm.realm_id}/{type_repr(actr_id.type)}"
    )


def normalize_version(version: str | None) -> str | None:
    """Trim a version; a blank or missing version becomes ``None``."""
    if version is None:
        return None
    trimmed = version.strip(_RUST_WHITESPACE)
    return trimmed or None


def type_key(actr_type: actr_pb2.ActrType) -> str:
    """Return the signaling type key: the type repr with the version trimmed.

    ACL rows, discovery grouping and compatibility-cache keys use this form.
    """
    version = normalize_version(
        actr_type.version if actr_type.HasField("version") else None
    )
    if version is None:
        return f"{actr_type.manufacturer}:{actr_type.name}"
    return f"{actr_type.manufacturer}:{actr_type.name}:{version}"


def parse_actr_type(text: str) -> actr_pb2.ActrType:
    """Parse ``manufacturer:name[:version]``.

    The version is kept verbatim: ``a:b:`` yields a present, empty version and
    ``a:b`` an absent one. The version itself is not checked.

    Raises:
        ActrIdError: on fewer than 2 or more than 3 parts, or an invalid
            manufacturer or name.
    """
    parts = text.split(":", 3)
    if len(parts) not in (2, 3):
        raise ActrIdError(
            f"invalid actor type format: {text!r}; "
            "expected <manufacturer>:<name>[:<version>]"
        )
    manufacturer, name = parts[0], parts[1]
    try:
        validate_name(manufacturer)
    except ActrIdError as e:
        raise ActrIdError(f"invalid manufacturer: {e}") from None
    try:
        validate_name(name)
    except ActrIdError as e:
        raise ActrIdError(f"invalid type name: {e}") from None
    actr_type = actr_pb2.ActrType(manufacturer=manufacturer, name=name)
    if len(parts) == 3:
        actr_type.version = parts[2]
    return actr_type


def _parse_uint(text: str, pattern: re.Pattern[str], base: int, limit: int) -> int:
    if pattern.fullmatch(text) is None:
        raise ValueError(text)
    # Strip leading zeros before int(): decimal strings over 4300 digits would
    # otherwise hit CPython's int-conversion limit.
    digits = text.lstrip("+").lstrip("0") or "0"
    if len(digits) > 20:
        raise ValueError(text)
    value = int(digits, base)
    if value > limit:
        raise ValueError(text)
    return value


def parse_actr_id(text: str) -> actr_pb2.ActrId:
    """Parse ``<serial hex>@<realm decimal>/<manufacturer>:<name>[:<version>]``.

    Splits at the first ``@`` and then the first ``/``. The serial is a u64 in
    hex (either case), the realm a u32 in decimal; like the Rust parser, both
    accept leading zeros and one leading ``+``.

    Raises:
        ActrIdError: for any malformed part.
    """
    serial_part, at, rest = text.partition("@")
    if not at:
        raise ActrIdError(f"invalid actor id {text!r}: missing '@' separator")
    try:
        serial = _parse_uint(serial_part, _HEX_RE, 16, _U64_MAX)
    except ValueError:
        raise ActrIdError(f"invalid serial number hex: {serial_part!r}") from None
    realm_part, slash, type_part = rest.partition("/")
    if not slash:
        raise ActrIdError(f"invalid actor id {text!r}: missing '/' separator")
    try:
        realm_id = _parse_uint(realm_part, _DEC_RE, 10, _U32_MAX)
    except ValueError:
        raise ActrIdError(f"invalid realm id: {realm_part!r}") from None
    actr_type = parse_actr_type(type_part)
    return actr_pb2.ActrId(
        realm=actr_pb2.Realm(realm_id=realm_id),
        serial_number=serial,
        type=actr_type,
    )


def same_actor(a: actr_pb2.ActrId, b: actr_pb2.ActrId) -> bool:
    """Tell whether two ids name the same actor: equal realm_id and serial number.

    The type is not compared (relay delivery matches this way).
    """
    return a.realm.realm_id == b.realm.realm_id and a.serial_number == b.serial_number


def new_actr_id(
    realm_id: int,
    serial: int,
    manufacturer: str,
    name: str,
    version: str | None = None,
) -> actr_pb2.ActrId:
    """Build a fully populated ActrId; ``version=None`` leaves the field absent.

    Names are not validated (AIS does not validate them either).

    Raises:
        ValueError: if realm_id or serial is out of the u32/u64 range.
    """
    actr_type = actr_pb2.ActrType(manufacturer=manufacturer, name=name)
    if version is not None:
        actr_type.version = version
    return actr_pb2.ActrId(
        realm=actr_pb2.Realm(realm_id=realm_id),
        serial_number=serial,
        type=actr_type,
    )
