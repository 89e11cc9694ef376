"""Key Server: secp256k1 key pairs for identity tokens (ks.md)."""
