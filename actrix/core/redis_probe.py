"""One blocking round trip to the configured Redis, for ``actrix check --runtime``.

The daemon talks to Redis through txredisapi on the reactor; the CLI check runs
before any reactor, so it opens one socket (TCP, TLS or unix) with the same
settings, sends ``AUTH`` (when a password is set), ``SELECT`` and ``PING`` and
reads the three answers. Commands are packed and replies parsed by hiredis (the
Redis project's own RESP code, already the daemon's reply parser); the password
never appears in what is returned.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Final

import hiredis

from actrix.core.settings import RedisConfig

# A PING, AUTH and SELECT answer is a few bytes; a server that sends more than
# this before answering is not a Redis we can use.
MAX_REPLY_BYTES: Final = 64 * 1024


def redis_problem(config: RedisConfig) -> str | None:
    """Why the daemon could not use this Redis now, or None when it answers."""
    where = config.host if config.unix else f"{config.host}:{config.port}"
    try:
        conn = _connect(config)
    except ssl.SSLError as e:
        return f"redis: TLS with {where} failed: {e.reason or e}"
    except OSError as e:
        return f"redis: cannot connect to {where}: {e.strerror or e}"
    with conn:
        commands: list[tuple[Any, ...]] = []
        if config.password is not None:
            commands.append(("AUTH", config.password.value))
        commands += [("SELECT", str(config.db)), ("PING",)]
        try:
            conn.sendall(b"".join(hiredis.pack_command(c) for c in commands))
            replies = _read_replies(conn, len(commands), config.reply_timeout)
        except (OSError, ValueError) as e:
            return f"redis: {where} did not answer: {e}"
    for command, reply in zip(commands, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError):
            return f"redis: {where} refused {command[0]}: {reply}"
    return None


def _connect(config: RedisConfig) -> socket.socket:
    timeout = config.connect_timeout
    if config.unix:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(config.host)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((config.host, config.port), timeout=timeout)
    if not config.tls:
        return sock
    cafile = None if config.tls_ca is None else str(config.tls_ca)
    context = ssl.create_default_context(cafile=cafile)
    try:
        return context.wrap_socket(sock, server_hostname=config.host)
    except OSError:
        sock.close()
        raise


def _read_replies(conn: socket.socket, count: int, timeout: float) -> list[object]:
    """``count`` replies, within ``timeout`` and MAX_REPLY_BYTES in all.

    Raises:
        ValueError: too much data, or the server closed first.
        OSError: the socket failed or timed out.
    """
    reader = hiredis.Reader()
    replies: list[object] = []
    received = 0
    deadline = time.monotonic() + timeout
    while len(replies) < count:
        reply = reader.gets()
        if reply is not False:
            replies.append(reply)
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        conn.settimeout(remaining)
        data = conn.recv(4096)
        if not data:
            raise ValueError("the connection closed")
        received += len(data)
        if received > MAX_REPLY_BYTES:
            raise ValueError(f"more than {MAX_REPLY_BYTES} bytes of reply")
        reader.feed(data)
    return replies
