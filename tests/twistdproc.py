"""A real ``twistd actrix`` process for integration tests: its lines, its end.

The process runs this tree's actrix (``PYTHONPATH``) from the test's Python;
its stdout and stderr (and those of any worker it starts, which inherit them)
are read line by line, so a test waits for a log line the way an operator
reads the journal. Cleanup kills whatever is still running by its PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

TWISTD = str(Path(sys.executable).parent / "twistd")
ROOT = Path(__file__).parents[1]


class TwistdProcess(ProcessProtocol):
    """One ``twistd --nodaemon actrix -c CONFIG ...`` process."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ended: Deferred[int] = Deferred()
        self.exit_code: int | None = None
        self._partial = b""
        self._waiting: list[tuple[re.Pattern[str], int, Deferred[re.Match[str]]]] = []

    @classmethod
    def spawn(cls, test: TestCase, config: Path, *args: str) -> TwistdProcess:
        proto = cls()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        argv = [TWISTD, "--nodaemon", "--pidfile=", "actrix", "-c", str(config)]
        reactor.spawnProcess(
            proto, TWISTD, [*argv, *args], env=env, path=str(config.parent)
        )
        test.addCleanup(proto.kill_all)
        return proto

    @property
    def pid(self) -> int:
        return int(self.transport.pid or 0)  # type: ignore[union-attr]  # spawned

    def outReceived(self, data: bytes) -> None:
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            self.lines.append(raw.decode("utf-8", "replace"))
        self._check()

    errReceived = outReceived

    def _check(self) -> None:
        still = []
        for pattern, start, d in self._waiting:
            found = self._search(pattern, start)
            if found is None:
                still.append((pattern, start, d))
            else:
                d.callback(found)
        self._waiting = still

    def _search(self, pattern: re.Pattern[str], start: int) -> re.Match[str] | None:
        for line in self.lines[start:]:
            found = pattern.search(line)
            if found is not None:
                return found
        return None

    def mark(self) -> int:
        """A position in the output: :meth:`wait_for` from here on."""
        return len(self.lines)

    async def wait_for(
        self, pattern: str, timeout: float = 20.0, start: int = 0
    ) -> re.Match[str]:
        """The first line from ``start`` on matching ``pattern``."""
        compiled = re.compile(pattern)
        found = self._search(compiled, start)
        if found is not None:
            return found
        d: Deferred[re.Match[str]] = Deferred()
        self._waiting.append((compiled, start, d))
        d.addTimeout(timeout, reactor)
        try:
            return await d
        except Exception as e:
            tail = "\n".join(self.lines[-30:])
            raise AssertionError(f"no line matching {pattern!r}; last:\n{tail}") from e

    def count(self, pattern: str) -> int:
        compiled = re.compile(pattern)
        return sum(1 for line in self.lines if compiled.search(line))

    def processEnded(self, reason: Failure) -> None:
        value: Any = reason.value
        code = getattr(value, "exitCode", None)
        self.exit_code = code if code is not None else -(value.signal or 0)
        self.ended.callback(self.exit_code)

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessExitedAlready, AttributeError):
            self.transport.signalProcess(signum)  # type: ignore[union-attr]  # spawned

    async def kill_all(self) -> None:
        """Cleanup: SIGKILL the process if it still runs, and wait for its end."""
        if self.exit_code is None:
            self.signal(signal.SIGKILL)
            await self.ended


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
