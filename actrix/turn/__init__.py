"""TURN (RFC 5766/6156): allocations, relaying, credentials, peer policy."""
