"""actrix: signaling, STUN/TURN, key server and identity service for Actor-RTC."""

from __future__ import annotations

__version__ = "0.1.0"
