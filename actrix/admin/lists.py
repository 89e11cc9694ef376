"""Errors, query parsing and pagination shared by every admin API route.

Every list answers ``{"items", "total", "limit", "offset"}`` after filtering
and sorting server-side; ``limit`` is 1..1000 (default 100), anything else is
a 400 rather than a silent clamp, so a client asking for 10**6 rows learns it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from twisted.web.server import Request

from actrix.core.http import parse_decimal

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100
MAX_OFFSET: Final = 10**9
MAX_QUERY_VALUE: Final = 256

_STATUS: Final = {
    "bad_request": 400,
    "unauthorized": 401,
    "csrf": 403,
    "read_only": 403,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_many_requests": 429,
    "unavailable": 503,
}


class ApiError(Exception):
    """An answer other than 2xx: contract code, words for the operator."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.status = _STATUS[code]
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def arg(request: Request, name: str) -> str | None:
    """One query parameter as text (the first if repeated), or None.

    Raises:
        ApiError: not UTF-8 or longer than 256 characters.
    """
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    raw: bytes = values[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("bad_request", f"query parameter {name}: not UTF-8") from None
    if len(text) > MAX_QUERY_VALUE:
        raise ApiError("bad_request", f"query parameter {name}: too long")
    return text


def int_arg(request: Request, name: str, maximum: int = 2**53) -> int | None:
    text = arg(request, name)
    if text is None or text == "":
        return None
    value = parse_decimal(text, maximum)
    if value is None:
        raise ApiError(
            "bad_request", f"query parameter {name}: expected an integer 0..{maximum}"
        )
    return value


class Page:
    """``limit``, ``offset``, ``sort`` and ``order`` of a list request."""

    def __init__(self, request: Request, sortable: Sequence[str], default: str):
        limit = int_arg(request, "limit", maximum=10**12)
        if limit is None:
            limit = DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(
                "bad_request", f"limit must be between 1 and {MAX_LIMIT}, got {limit}"
            )
        offset = int_arg(request, "offset", maximum=MAX_OFFSET)
        self.limit = limit
        self.offset = offset or 0
        sort = arg(request, "sort") or default
        if sort not in sortable:
            raise ApiError(
                "bad_request",
                f"sort must be one of {', '.join(sortable)}, got {sort!r}",
            )
        order = arg(request, "order") or "asc"
        if order not in ("asc", "desc"):
            raise ApiError("bad_request", "order must be asc or desc")
        self.sort = sort
        self.descending = order == "desc"

    def answer(self, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Sort ``items`` (None last) and cut this page."""

        def key(item: Mapping[str, Any]) -> tuple[bool, Any]:
            value = item.get(self.sort)
            return (value is None) != self.descending, value if value is not None else 0

        ordered = sorted(items, key=key, reverse=self.descending)
        return {
            "items": ordered[self.offset : self.offset + self.limit],
            "total": len(ordered),
            "limit": self.limit,
            "offset": self.offset,
        }


MAX_JSON_BODY: Final = 64 * 1024


def json_body(
    request: Request, fields: Mapping[str, Callable[[Any], bool]]
) -> dict[str, Any]:
    """The request's JSON object, checked: only ``fields``, each passing its test.

    Raises:
        ApiError: not a JSON object, too large, an unknown field, a bad value.
    """
    assert request.content is not None  # noqa: S101 (twisted.web sets it)
    raw = request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ApiError("bad_request", "request body larger than 64 KiB")
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError("bad_request", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError("bad_request", "request body must be a JSON object")
    for name, value in data.items():
        check = fields.get(name)
        if check is None:
            raise ApiError("bad_request", f"unknown field {name!r}")
        if not check(value):
            raise ApiError("bad_request", f"field {name!r} has a wrong type or value")
    return data


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def is_opt_int(value: Any) -> bool:
    return value is None or is_int(value)


def is_text(limit: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, str) and len(value.strip()) > 0 and len(value) <= limit

    return check


def is_reason(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 256
