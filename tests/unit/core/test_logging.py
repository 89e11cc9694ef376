"""Log observers: JSON lines, console text, level filter, files with rotation."""

from __future__ import annotations

import io
import json
from pathlib import Path

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from actrix.core import logging as actrix_logging


class LoggingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(actrix_logging.set_level, "info")

    def emit(self, observer: object, level: LogLevel = LogLevel.info) -> None:
        publisher = LogPublisher(observer)  # type: ignore[arg-type]  # ILogObserver
        Logger(namespace="actrix.test", observer=publisher).emit(
            level, "allocation {alloc_id} ready", alloc_id=7
        )

    def test_json_observer_writes_one_object_per_line(self) -> None:
        """The JSON observer writes parseable records with the event fields."""
        out = io.StringIO()
        self.emit(actrix_logging.json_observer(out))
        record = json.loads(out.getvalue().strip("\x1e\n"))
        self.assertEqual(record["alloc_id"], 7)
        self.assertEqual(record["log_namespace"], "actrix.test")

    def test_console_observer_formats_text(self) -> None:
        """The console observer renders the format string."""
        out = io.StringIO()
        self.emit(actrix_logging.console_observer(out))
        self.assertIn("allocation 7 ready", out.getvalue())

    def test_level_filter(self) -> None:
        """Events below the configured level are dropped; set_level changes it."""
        out = io.StringIO()
        observer = actrix_logging.console_observer(out)
        self.emit(observer, LogLevel.debug)
        self.assertEqual(out.getvalue(), "")
        actrix_logging.set_level("debug")
        self.emit(observer, LogLevel.debug)
        self.assertIn("allocation 7", out.getvalue())
        actrix_logging.set_level("error")
        before = out.getvalue()
        self.emit(observer, LogLevel.warn)
        self.assertEqual(out.getvalue(), before)

    def test_file_output(self) -> None:
        """File output writes actrix.log in the configured directory."""
        directory = Path(self.mktemp())
        for rotate in (False, True):
            self.emit(actrix_logging.file_observer(directory, rotate))
        self.assertIn("allocation 7 ready", (directory / "actrix.log").read_text())

    def test_worker_file_output(self) -> None:
        """A worker's file output is a file of its own next to actrix.log."""
        directory = Path(self.mktemp())
        self.emit(actrix_logging.file_observer(directory, True, "actrix-w1.log"))
        self.assertIn("allocation 7 ready", (directory / "actrix-w1.log").read_text())
        self.assertFalse((directory / "actrix.log").exists())

    def test_level_names(self) -> None:
        """Config level names map onto Twisted levels (trace is debug)."""
        self.assertEqual(actrix_logging.level_from_name("trace"), LogLevel.debug)
        self.assertEqual(actrix_logging.level_from_name("WARN"), LogLevel.warn)
