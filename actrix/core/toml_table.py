"""A checked view on a decoded TOML table that records problems by dotted key.

Each accessor checks the value's type (and range, format) and, on a problem,
appends ``<dotted.key>: <message>`` to a shared list instead of raising, so one
pass reports every error. :meth:`Table.finish` reports keys nobody asked for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from actrix.core.settings import AlternateServer, Secret

T = TypeVar("T")

_MISSING: Final = object()


class Table:
    """A view on one TOML table that records problems under its dotted prefix."""

    def __init__(
        self, data: Mapping[str, Any], prefix: str, problems: list[str]
    ) -> None:
        self._data = data
        self._prefix = prefix
        self._problems = problems
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}" if not self._prefix else f"{self._prefix}.{name}"

    def error(self, name: str, message: str) -> None:
        self._problems.append(f"{self.key(name)}: {message}")

    def names(self) -> list[str]:
        """Every key present in the table."""
        return list(self._data)

    def skip(self, name: str) -> None:
        """Accept ``name`` without reading it (handled elsewhere)."""
        self._seen.add(name)

    def has(self, name: str) -> bool:
        return name in self._data

    def _get(self, name: str, required: bool) -> Any:
        self._seen.add(name)
        if name in self._data:
            return self._data[name]
        if required:
            self.error(name, "missing required key")
        return _MISSING

    def _typed(
        self,
        name: str,
        kind: type[T] | tuple[type, ...],
        label: str,
        default: T,
        required: bool,
    ) -> T:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) and kind is not bool:
            self.error(name, f"expected {label}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.error(name, f"expected {label}, got {type_name(value)}")
            return default
        return value  # type: ignore[return-value]  # isinstance checked above

    def string(
        self,
        name: str,
        default: str = "",
        *,
        required: bool = False,
        non_blank: bool = False,
    ) -> str:
        value = self._typed(name, str, "a string", default, required)
        if non_blank and name in self._data and not str(value).strip():
            self.error(name, "must not be blank")
        return value

    def opt_string(self, name: str) -> str | None:
        if name not in self._data:
            self._seen.add(name)
            return None
        return self.string(name)

    def integer(
        self,
        name: str,
        default: int = 0,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self._typed(name, int, "an integer", default, required)
        if name in self._data and isinstance(value, int):
            if minimum is not None and value < minimum:
                self.error(name, f"must be >= {minimum}")
                return default
            if maximum is not None and value > maximum:
                self.error(name, f"must be <= {maximum}")
                return default
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self._typed(name, (int, float), "a number", default, False)
        if name in self._data and minimum is not None and value < minimum:
            self.error(name, f"must be >= {minimum}")
            return default
        if name in self._data and maximum is not None and value > maximum:
            self.error(name, f"must be <= {maximum}")
            return default
        if value != value:  # NaN compares false with every bound
            self.error(name, "must be a number, not nan")
            return default
        return float(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        return self._typed(name, bool, "a boolean", default, False)

    def port(self, name: str, *, required: bool = True, default: int = 0) -> int:
        return self.integer(name, default, required=required, minimum=0, maximum=65535)

    def ip(self, name: str, *, required: bool = True, default: str = "") -> str:
        value = self.string(name, default, required=required)
        if name in self._data and isinstance(self._data[name], str):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                self.error(name, "not an IP address")
        return value

    def path(self, name: str, *, required: bool = False) -> Path | None:
        value = self._get(name, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(name, "expected a non-blank path string")
            return None
        return Path(value)

    def secret(self, name: str, *, required: bool = False) -> Secret | None:
        value = self._get(name, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.error(name, f"expected a string, got {type_name(value)}")
            return None
        return Secret(value)

    def secret_list(self, name: str) -> tuple[Secret, ...]:
        """One secret string or a non-empty list of them (rotation: newest first)."""
        value = self._get(name, False)
        if value is _MISSING:
            return ()
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) for v in value)
        ):
            self.error(name, "expected a string or a non-empty list of strings")
            return ()
        if not all(value):
            self.error(name, "secrets must not be empty")
        return tuple(Secret(v) for v in value)

    def alternate_servers(self, name: str) -> tuple[AlternateServer, ...]:
        """``ip:port`` strings or ``{address, domain, tls_port}`` inline tables."""
        value = self._get(name, False)
        if value is _MISSING:
            return ()
        if not isinstance(value, list):
            self.error(name, f"expected an array, got {type_name(value)}")
            return ()
        servers = []
        for i, entry in enumerate(value):
            if isinstance(entry, str):
                try:
                    parse_server(entry)
                except ValueError:
                    self.error(name, f"{entry!r} is not ip:port or [ipv6]:port")
                else:
                    servers.append(AlternateServer(entry))
                continue
            if not isinstance(entry, dict):
                self.error(
                    name, f'expected "ip:port" or a table, got {type_name(entry)}'
                )
                continue
            table = Table(entry, self.key(f"{name}[{i}]"), self._problems)
            address = table.string("address", required=True)
            domain = table.opt_string("domain")
            tls_port = table.integer("tls_port", 0, minimum=1, maximum=65535)
            table.finish()
            try:
                parse_server(address)
            except ValueError:
                if isinstance(entry.get("address"), str):
                    table.error("address", f"{address!r} is not ip:port or [ipv6]:port")
                continue
            if domain is not None and not is_domain_name(domain):
                table.error("domain", f"{domain!r} is not a DNS name (A-labels)")
                continue
            servers.append(AlternateServer(address, domain, tls_port))
        return tuple(servers)

    def string_list(self, name: str) -> tuple[str, ...]:
        value = self._get(name, False)
        if value is _MISSING:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(name, "expected a list of strings")
            return ()
        return tuple(value)

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self._get(name, required)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.error(name, f"expected a table, got {type_name(value)}")
            return None
        return Table(value, self.key(name), self._problems)

    def table_list(self, name: str) -> list[tuple[Table, dict[str, Any]]]:
        """An array of tables (``[[name]]``): a checked view and the raw data each."""
        value = self._get(name, False)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.error(name, "expected an array of tables")
            return []
        return [
            (Table(v, self.key(f"{name}[{i}]"), self._problems), v)
            for i, v in enumerate(value)
        ]

    def finish(self) -> None:
        for name in self._data:
            if name not in self._seen:
                self.error(name, "unknown key")


def type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def read_table(
    parent: Table,
    name: str,
    reader: Callable[[Table], T],
    *,
    required: bool = False,
) -> T | None:
    table = parent.table(name, required=required)
    if table is None:
        return None
    result = reader(table)
    table.finish()
    return result


DEFAULT_STUN_PORT: Final = 3478
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def is_domain_name(text: str) -> bool:
    """A DNS name of ASCII labels (IDNs as ``xn--`` A-labels), not an IP.

    RFC 8489 §14.16 caps ALTERNATE-DOMAIN below 128 characters; a DNS name
    is at most 253.
    """
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        return False  # a dotted number is an address, not a name
    return all(_LABEL.match(label) for label in labels)


def parse_server(text: str) -> tuple[str, int]:
    """``ip:port`` or ``[ipv6]:port`` (port optional, 3478) as (ip, port).

    Raises:
        ValueError: not an IP literal with a port in 1-65535.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [ipv6]:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    ip = ipaddress.ip_address(host)
    port = int(port_text) if port_text else DEFAULT_STUN_PORT
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port out of range")
    return str(ip), port
