"""Unit tests: synchronous, no real reactor, sockets or time."""
