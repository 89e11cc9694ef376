"""STUN: the wire codec shared by the ICE services, and the STUN-only server."""
