"""actrix tests; ``HYPOTHESIS_PROFILE=ci`` (``make test``) selects bounded runs."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, max_examples=200
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
