"""Signaling: the actr protocol over WebSocket (signaling.md)."""
