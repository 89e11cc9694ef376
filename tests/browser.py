"""Debian's Chromium driven by Playwright, shared by the real-browser tests.

The sync Playwright API runs in a worker thread (``deferToThread``) so the
daemon under test keeps serving on the reactor. Under ``CI=true`` a missing
browser fails a test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import SkipTest, TestCase

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why no browser test can run here, or None when Chromium and Playwright exist."""
    if os.path.exists(CHROMIUM) and shutil.which("chromium"):
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            return "playwright is not installed"
        return None
    return f"{CHROMIUM} is not installed (apt-get install chromium; make tools)"


def require_browser(test: TestCase) -> None:
    """Skip ``test`` without a browser, or fail it under ``CI=true``."""
    missing = browser_missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        test.fail(missing)
    raise SkipTest(missing)
