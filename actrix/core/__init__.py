"""Shared plumbing: configuration, storage, realms, crypto, listeners, logging, metrics.

Nothing in ``actrix.core`` imports a service package.
"""
