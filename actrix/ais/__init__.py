"""Actor Identity Service: ActrIds and encrypted identity tokens (ais.md)."""
