"""``actrix discover``: list the actrix daemons announcing themselves on the LAN.

It browses ``_actrix._tcp`` for a while, then resolves every service type of
:mod:`actrix.core.discovery` under each daemon's instance name and groups the
records by the daemon's ``id``. What
arrives from the network is untrusted: counts and text lengths are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TextIO

import attrs

from actrix.cli.common import fail, print_json
from actrix.core import discovery as d

MAX_DAEMONS: Final = 256
MAX_TEXT: Final = 128
RESOLVE_TIMEOUT_MS: Final = 1000


@attrs.define
class FoundDaemon:
    id: str
    node: str
    instance: str
    endpoints: dict[str, list[str]] = attrs.Factory(dict)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text[:MAX_TEXT] if c.isprintable())


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _port_path(value: Any) -> tuple[int, str] | None:
    """``port`` or ``port/path`` from a TXT value; None if malformed."""
    text = _text(value)
    port_text, slash, path = text.partition("/")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return int(port_text), slash + path


def endpoint_urls(
    addresses: list[str], port: int, txt: dict[str, Any]
) -> list[tuple[str, str]]:
    """(kind, URL) pairs a daemon's ``_actrix._tcp`` record announces."""
    tls = txt.get("tls") == "1"
    ice = [a for a in _text(txt.get("ice_ip")).split(",") if a] or addresses
    urls: list[tuple[str, str]] = []
    for address in addresses:
        if "tls" in txt:  # set only when the record is the HTTP(S) site's
            urls.append(
                ("site", f"{'https' if tls else 'http'}://{_host(address)}:{port}")
            )
    schemes = (
        ("signaling", "wss" if tls else "ws", addresses, "{}"),
        ("rooms", "wss" if tls else "ws", addresses, "{}"),
        ("stun", "stun", ice, "{}"),
        ("turn", "turn", ice, "{}?transport=udp"),
        ("turn_tcp", "turn", ice, "{}?transport=tcp"),
        ("turns", "turns", ice, "{}?transport=tcp"),
    )
    for key, scheme, hosts, shape in schemes:
        found = _port_path(txt.get(key)) if key in txt else None
        if found is None:
            continue
        kind = "turn" if key == "turn_tcp" else key
        separator = "://" if scheme in ("ws", "wss") else ":"
        for address in hosts:
            where = f"{_host(address)}:{found[0]}{found[1]}"
            urls.append((kind, f"{scheme}{separator}{shape.format(where)}"))
    return urls


def browse(
    seconds: float,
    interfaces: list[str],
    events: Callable[[str, str], None] | None = None,
) -> list[FoundDaemon]:
    """Browse ``_actrix._tcp`` for ``seconds``; the daemons still announced then.

    Each daemon's record is resolved (its TXT sums up every endpoint).
    ``events(what, name)`` hears each ``added`` / ``removed`` daemon as it
    happens.
    """
    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    zc = d.zeroconf_for(interfaces)
    present: dict[str, None] = {}
    lock = threading.Lock()

    def on_change(
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        with lock:
            if state_change is ServiceStateChange.Removed:
                present.pop(name, None)
                what = "removed"
            elif state_change is ServiceStateChange.Added:
                if len(present) >= MAX_DAEMONS:
                    return
                present[name] = None
                what = "added"
            else:
                return
        if events is not None:
            events(what, _text(name))

    browser = ServiceBrowser(zc, d.DAEMON, handlers=[on_change])
    try:
        time.sleep(seconds)
        with lock:
            instances = [n.removesuffix("." + d.DAEMON) for n in present]
        return _resolve(zc, instances)
    finally:
        browser.cancel()
        zc.close()


def _resolve(zc: Any, instances: list[str]) -> list[FoundDaemon]:
    """The ``_actrix._tcp`` record of every instance, resolved at once (blocking)."""
    from zeroconf.asyncio import AsyncServiceInfo

    infos = [AsyncServiceInfo(d.DAEMON, f"{i}.{d.DAEMON}") for i in instances]

    async def request_all() -> None:
        await asyncio.gather(*(i.async_request(zc, RESOLVE_TIMEOUT_MS) for i in infos))

    asyncio.run_coroutine_threadsafe(request_all(), zc.loop).result(
        RESOLVE_TIMEOUT_MS / 1000 + 5
    )
    found: list[FoundDaemon] = []
    for info in infos:
        if info.port is None:
            continue
        txt = info.decoded_properties
        daemon = FoundDaemon(
            _text(txt.get("id")),
            _text(txt.get("node")),
            _text(info.name.removesuffix("." + d.DAEMON)),
        )
        for kind, url in endpoint_urls(info.parsed_addresses(), info.port, txt):
            daemon.endpoints.setdefault(kind, []).append(url)
        found.append(daemon)
    return sorted(found, key=lambda f: (f.node, f.instance))


def cmd_discover(args: argparse.Namespace, out: TextIO) -> int:
    if not 0.1 <= args.timeout <= 300:
        fail("--timeout: 0.1 to 300 seconds")
    for address in args.interface:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            fail(f"--interface: {address!r} is not an IP address")

    def event(what: str, name: str) -> None:
        out.write(f"{what}\t{name}\n")
        out.flush()

    daemons = browse(args.timeout, args.interface, event if args.watch else None)
    if args.json:
        print_json(out, [attrs.asdict(f) for f in daemons])
        return 0
    for daemon in daemons:
        out.write(f"{daemon.node}\t{daemon.instance}\tid={daemon.id}\n")
        for kind, urls in sorted(daemon.endpoints.items()):
            for url in sorted(urls):
                out.write(f"  {kind}\t{url}\n")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "discover", help="list the actrix daemons announced on the LAN (mDNS)"
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to listen")
    p.add_argument(
        "--interface",
        action="append",
        default=[],
        help="an address to browse on (repeatable; default: all interfaces)",
    )
    p.add_argument(
        "--watch", action="store_true", help="print each added/removed service"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_discover)
