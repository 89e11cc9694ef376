"""twistd plugin: ``twistd -n actrix -c config.toml`` (imports actrix.tap lazily)."""

from __future__ import annotations

from twisted.application.service import ServiceMaker

actrix = ServiceMaker(
    "actrix", "actrix.tap", "Actor-RTC signaling, STUN/TURN, KS and AIS", "actrix"
)
