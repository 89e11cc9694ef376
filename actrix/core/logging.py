"""Log observers: readable console lines, JSON lines, files with daily rotation.

Use with twistd: ``--logger actrix.core.logging.json_observer`` (production,
journald) or ``--logger actrix.core.logging.console_observer`` (development).
All observers filter through the process-wide :data:`LEVELS` predicate, which
:func:`apply_settings` sets from ``observability.filter_level`` and SIGHUP
re-applies. (Logging is process-global in Twisted, so this one switch is too.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Final

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import DailyLogFile, LogFile

LEVELS: Final = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)

_LEVEL_NAMES: Final = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


def level_from_name(name: str) -> LogLevel:
    """Map a config level (``trace``..``error``) to a Twisted LogLevel."""
    level: LogLevel = _LEVEL_NAMES.get(name.strip().lower(), LogLevel.info)
    return level


def set_level(name: str) -> None:
    """Set the minimum level every actrix observer lets through."""
    LEVELS.setLogLevelForNamespace("", level_from_name(name))


def json_observer(out: IO[str] | None = None) -> ILogObserver:
    """JSON lines on stdout (for journald), filtered by :data:`LEVELS`."""
    return FilteringLogObserver(jsonFileLogObserver(out or sys.stdout), [LEVELS])


def console_observer(out: IO[str] | None = None) -> ILogObserver:
    """Human-readable lines on stdout, filtered by :data:`LEVELS`."""
    return FilteringLogObserver(
        textFileLogObserver(out or sys.stdout, timeFormat="%Y-%m-%d %H:%M:%S"),
        [LEVELS],
    )


def file_observer(
    directory: Path, rotate: bool, name: str = "actrix.log"
) -> ILogObserver:
    """Text log in ``directory/actrix.log`` (or ``name``), rotated daily when asked."""
    directory.mkdir(parents=True, exist_ok=True)
    logfile: IO[str]
    if rotate:
        logfile = DailyLogFile(name, str(directory))  # type: ignore[assignment]  # file-like
    else:
        logfile = LogFile(name, str(directory), rotateLength=None)  # type: ignore[assignment]  # file-like
    return FilteringLogObserver(textFileLogObserver(logfile), [LEVELS])


def add_file_output(
    directory: Path, rotate: bool, name: str = "actrix.log"
) -> ILogObserver:
    """Start writing log events to files as the config asks; returns the observer.

    Each process rotates its own file: a worker of a supervisor writes
    ``actrix-wN.log`` next to the supervisor's ``actrix.log``.
    """
    observer = file_observer(directory, rotate, name)
    globalLogPublisher.addObserver(observer)
    return observer
